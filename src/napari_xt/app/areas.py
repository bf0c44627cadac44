"""Several "complete" areas for detection: one training item per area, so each is a ROI of its own.

``DetectionAnnotations.area`` is one polygon (the plan's ROI and the cells where a missing point is a negative). A
user who marks every object in several places — the suggested regions they visited, say — has several disjoint
areas, and their bounding polygon would call every unmarked object between them a negative. So the tab's area
layer, when it holds more than one shape, becomes one :class:`~napari_xt.train.TrainingImage` per shape: the same
image and points, each with its own area. torch-free: ``napari_xt.train`` is imported inside the call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .layers import world_to_level0

if TYPE_CHECKING:
    from ..train import TrainingImage


def layer_areas(shapes: Any, image_layer: Any) -> list[list[tuple[float, float]]]:
    """Every polygon and rectangle of a Shapes layer as (y, x) vertices in the image's level-0 px."""
    out = []
    scale = np.asarray(shapes.scale, dtype=float)[-2:]
    translate = np.asarray(shapes.translate, dtype=float)[-2:]
    for data, kind in zip(shapes.data, shapes.shape_type, strict=False):
        if kind not in ("polygon", "rectangle") or len(data) < 3:
            continue
        world = np.asarray(data, dtype=float)[:, -2:] * scale + translate
        out.append([world_to_level0(image_layer, v) for v in world])
    return out


def items_per_area(item: TrainingImage, area_layer: Any, image_layer: Any) -> list[TrainingImage]:
    """``[item]`` unless it is detection-only and the area layer has several shapes; then one item per shape."""
    if item.detection is None or item.segmentation is not None or area_layer is None:
        return [item]
    areas = layer_areas(area_layer, image_layer)
    if len(areas) < 2:
        return [item]
    return [replace(item, detection=replace(item.detection, area=area), name=f"{item.name} area {n + 1}")
            for n, area in enumerate(areas)]
