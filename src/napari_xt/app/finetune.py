"""Fine-tuning from napari layers (worker side of the dock's Fine-tune tab), as plain data in and out.

The tab hands over layers; this module turns them into training data in the engine's terms (level-0 pixels of the
image the layers lie on) and runs ``napari_xt.train`` — importing torch only inside the calls, so the widget
stays torch-free and the viewer never waits for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._compat import keep_triton_out_without_cuda
from .layers import layer_to_large_image, shapes_to_roi, world_to_level0

if TYPE_CHECKING:
    from ..train import DetectionAnnotations, SegmentationLabels


@dataclass
class FinetuneRequest:
    """What the tab asks for (layers are read in the worker; nothing here is a Qt object)."""

    image_layer: Any  # napari layers, read duck-typed (this module imports neither napari nor Qt)
    labels_layer: Any = None
    points_layer: Any = None
    area_layer: Any = None  # Shapes: where the points annotation is complete
    base: str | None = None  # checkpoint/preset/demo key; None: a fresh tiny model
    out: str = ""
    epochs: int = 10
    region_size: int | None = None
    freeze_encoder: bool = False
    mode: str = "full"  # "quick": frozen encoder over the on-disk feature cache
    time_budget_s: float | None = None
    zero_is_unlabelled: bool = True
    device: str = "auto"
    precision: str = "fp32"


def labels_from_layer(layer: Any, image_shape: tuple[int, int], zero_is_unlabelled: bool = True
                      ) -> SegmentationLabels:
    """A Labels layer over the image -> ``SegmentationLabels`` (class names from its ``class`` feature if any)."""
    from ..train import SegmentationLabels

    data = list(layer.data) if getattr(layer, "multiscale", False) else [layer.data]
    names: list[str] = []
    features = getattr(layer, "features", None)
    if features is not None and "class" in getattr(features, "columns", []):
        names = [str(v) for v in features["class"]]
    colors = []
    if names:
        colors = [[round(255 * c) for c in layer.get_color(i)[:3]] for i in range(len(names))]
    return SegmentationLabels.from_array(data, image_shape, ignore=0 if zero_is_unlabelled else -1,
                                         class_names=names, class_colors=colors)


def points_from_layer(points: Any, image_layer: Any, area_layer: Any = None) -> DetectionAnnotations:
    """A Points layer -> ``DetectionAnnotations`` in level-0 px (class from a ``class`` feature, size from the
    point size, which napari gives in data units)."""
    from ..train import DetectionAnnotations

    coords = np.asarray(points.data, float)
    if coords.ndim != 2 or len(coords) == 0:
        raise ValueError(f"the points layer {points.name!r} has no points")
    world = np.array([points.data_to_world(c) for c in coords])
    level0 = np.array([world_to_level0(image_layer, p[-2:]) for p in world])
    scale = float(np.mean(np.abs(points.scale[-2:])))
    img_scale = float(np.mean(np.abs(image_layer.scale[-2:])))
    size = np.asarray(points.size, float).reshape(len(coords), -1).mean(1) * scale / img_scale
    features = getattr(points, "features", None)
    if features is not None and "class" in getattr(features, "columns", []):
        labels = [str(v) for v in features["class"]]
    else:
        labels = ["object"] * len(coords)
    names = sorted(set(labels))
    cls = np.array([names.index(v) for v in labels])
    area = shapes_to_roi(area_layer, image_layer) if area_layer is not None else None
    return DetectionAnnotations(level0[:, 0], level0[:, 1], size, size, cls, names, area=area)


def training_events(request: FinetuneRequest, holder: dict | None = None) -> Iterator[dict]:
    """Build the trainer from the layers and relay its events; ``holder["trainer"]`` lets the tab call ``stop()``."""
    keep_triton_out_without_cuda()  # before ..train imports timm: this worker may be the process's first model path
    from ..train import Trainer, TrainingImage, TrainOptions

    if request.labels_layer is None and request.points_layer is None:
        raise ValueError("Choose a Labels layer (segmentation) or a Points layer (detection) with your annotations.")
    image = layer_to_large_image(request.image_layer)
    shape = tuple(image.levels[0].shape[:2])
    seg = (labels_from_layer(request.labels_layer, shape, request.zero_is_unlabelled)
           if request.labels_layer is not None else None)
    det = (points_from_layer(request.points_layer, request.image_layer, request.area_layer)
           if request.points_layer is not None else None)
    item = TrainingImage(image, segmentation=seg, detection=det, name=str(request.image_layer.name))
    options = TrainOptions(out=request.out, base=request.base, epochs=int(request.epochs),
                           region_size=request.region_size, freeze_encoder=request.freeze_encoder,
                           mode=request.mode, time_budget_s=request.time_budget_s,
                           device=request.device, precision=request.precision,
                           description=f"fine-tuned in napari on {request.image_layer.name}")
    trainer = Trainer([item], options)
    if holder is not None:
        holder["trainer"] = trainer
    yield from trainer.events()
