"""Model outputs of a batch -> what the store keeps per region: label maps, probabilities, detections.

Why a module of its own: post-processing was half of the engine's cost with a free model (argmax over the class axis
of a non-contiguous slice: 44-65 ms per 512 px region). Here the reduction runs once per batch on the whole logits
tensor: on a GPU on the device, so only uint8 maps cross to the host; on the CPU through numpy's argmax over the
class axis of the contiguous array (5 ms per region, and it releases the GIL, so it overlaps compute). Both give
``torch.argmax``'s answer (the first maximum wins); the core crop is a view of the small label map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from .plan import Plan, Region

__all__ = ["RegionOutput", "batch_labels", "labels_from_logits", "region_outputs"]

Crop = tuple[int, int, int, int]  # (y0, x0, y1, x1) in region px


@dataclass
class RegionOutput:
    """One region's results, ready for the store (numpy only)."""

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    detections: dict[str, np.ndarray] = field(default_factory=dict)


def _label_dtype(num_classes: int) -> torch.dtype:
    return torch.uint8 if num_classes <= 256 else torch.int32  # int32 on the device, uint16 on the host


def batch_labels(seg: torch.Tensor, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``[N, K, H, W]`` logits -> (labels ``[N, H, W]`` uint8/uint16, probabilities ``[N, K, H, W]`` uint8 or None).

    Runs where ``seg`` lives; only the reduced maps are copied to the host.
    """
    k = seg.shape[1]
    host_dtype = np.uint8 if k <= 256 else np.uint16
    if seg.device.type == "cpu":
        logits = seg.detach().float().contiguous().numpy()
        labels = _argmax_classes(logits) if k <= 256 else logits.argmax(1).astype(host_dtype)
    else:
        labels = seg.float().argmax(1).to(_label_dtype(k)).cpu().numpy().astype(host_dtype, copy=False)
    probs = None
    if probabilities:
        probs = (seg.float().softmax(1) * 255).round().byte().cpu().numpy()
    return labels, probs


def _argmax_classes(logits: np.ndarray) -> np.ndarray:
    """``logits.argmax(1)`` as uint8 by a running maximum over the (few) classes: 3x numpy's argmax on 2 cores.

    Strictly-greater comparisons keep the first maximum, as argmax does; NaN logits (where argmax picks the first
    NaN) are rare enough to hand to argmax itself, so the answer is argmax's in every case.
    """
    n, k, h, w = logits.shape
    best = logits[:, 0].copy()
    labels = np.zeros((n, h, w), dtype=np.uint8)
    better = np.empty((n, h, w), dtype=bool)
    for c in range(1, k):
        np.greater(logits[:, c], best, out=better)
        np.maximum(best, logits[:, c], out=best)
        np.copyto(labels, np.uint8(c), where=better)
    if np.isnan(best).any():
        return logits.argmax(1).astype(np.uint8)
    return labels


def labels_from_logits(seg: torch.Tensor, i: int, crop: Crop) -> tuple[np.ndarray, np.ndarray | None]:
    """One region's core labels (and no probabilities): :func:`batch_labels` for a single region (benchmarks)."""
    labels, _ = batch_labels(seg[i : i + 1])
    y0, x0, y1, x1 = crop
    return labels[0, y0:y1, x0:x1], None


def core_crop(region: Region) -> Crop:
    """Where a region's core lies inside its box, in region px."""
    return (region.core[0] - region.box[0], region.core[1] - region.box[1],
            region.core[2] - region.box[0], region.core[3] - region.box[1])


def region_outputs(outputs: dict[str, Any], regions: list[Region], plan: Plan, probabilities: bool,
                   score_threshold: float, max_detections: int) -> list[RegionOutput]:
    """Every region's store payload from one batch's model outputs (in ``regions`` order)."""
    results = [RegionOutput() for _ in regions]
    with torch.inference_mode():
        seg = outputs.get("segmentation")
        if seg is not None:
            labels, probs = batch_labels(seg, probabilities)
            for i, region in enumerate(regions):
                y0, x0, y1, x1 = core_crop(region)
                results[i].labels = np.ascontiguousarray(labels[i, y0:y1, x0:x1])
                if probs is not None:
                    results[i].probabilities = np.ascontiguousarray(probs[i, :, y0:y1, x0:x1])
        if "detection" in outputs:
            for i, region in enumerate(regions):
                results[i].detections = _detections(outputs["detection"], i, region, plan, score_threshold,
                                                    max_detections)
    return results


def _detections(det: dict, i: int, region: Region, plan: Plan, score_threshold: float,
                max_detections: int) -> dict[str, np.ndarray]:
    from ..model.heads import decode_detections

    stride = plan.region_size / int(det["heatmap"].shape[-1])  # the head's stride: 4, or 2 with a stride-2 stem map
    dets = decode_detections(det, i, score_threshold=score_threshold, max_detections=max_detections, stride=stride)
    y = dets["y"] + region.box[0]
    x = dets["x"] + region.box[1]
    y0, x0, y1, x1 = region.core
    inside = (y >= y0) & (y < y1) & (x >= x0) & (x < x1)  # each object belongs to the region owning its centre
    f = plan.downsample_to_level0
    return {
        "y": (y[inside] * f).astype(np.float32),
        "x": (x[inside] * f).astype(np.float32),
        "h": (dets["h"][inside] * f).astype(np.float32),
        "w": (dets["w"][inside] * f).astype(np.float32),
        "cls": dets["cls"][inside].astype(np.int32),
        "score": dets["score"][inside].astype(np.float32),
    }
