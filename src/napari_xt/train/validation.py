"""Validation of a training run as a metric accumulator: the loop streams every validation window through the model
as inference would run it and hands each chunk's outputs and targets to :class:`Validation`; ``result()`` scores.

Per-class IoU/F1 (segmentation, with the dominant class left out of the score so "everything is sea" cannot look
like progress), detection F1 at the score threshold that is best on these windows (the threshold a saved checkpoint
carries: a fixed 0.3 scored F1 0 on real trees whose peaks had not yet risen that high) and image-class accuracy;
``score`` is their mean, what early stopping and the best checkpoint follow. Apart from the loop so what "better"
means is read in one place, and fed by it so this module needs nothing of the trainer's insides.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..engine.options import DEFAULT_SCORE_THRESHOLD
from ..model.heads import decode_detections
from .data import RegionSample
from .losses import DetectionMetric, SegmentationMetric, segmentation_report

#: Validation decodes every peak scoring at least this, so the best threshold can be chosen among them.
CALIBRATION_FLOOR = 0.02


class Validation:
    """One validation pass: ``update`` per chunk of regions, ``update_image`` per window with an image class, then
    ``result()`` -> mIoU (segmentation), F1 (detection), accuracy (classification) and their mean ``score``.

    ``score_threshold`` is the model's calibrated detection threshold (``XTConfig.score_threshold``, else the
    default): what the result reports when these windows hold nothing to calibrate a new one on.
    """

    def __init__(self, tasks: dict[str, dict[str, Any]], *, det_stride: int, dominant: int,
                 class_names: list[str] | None, score_threshold: float | None = None):
        self.seg = SegmentationMetric(tasks["segmentation"]["num_classes"]) if "segmentation" in tasks else None
        self.det = DetectionMetric(stride=det_stride) if "detection" in tasks else None
        self.det_stride, self.dominant, self.class_names = det_stride, dominant, class_names
        self.fallback = DEFAULT_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
        self.correct = self.seen = 0

    def update(self, outs: dict[str, Any], chunk: Sequence[RegionSample]) -> None:
        """The heads' outputs for ``chunk`` (one entry per region, in order) against the regions' targets."""
        for j, s in enumerate(chunk):  # a region without targets of a task (none annotated) scores nothing
            if self.seg is not None and s.segmentation is not None:
                self.seg.update(outs["segmentation"][j].argmax(0).cpu().numpy(), s.segmentation)
            if self.det is not None and s.objects is not None:
                pred = decode_detections(outs["detection"], j, score_threshold=CALIBRATION_FLOOR,
                                         stride=self.det_stride)
                self.det.update(pred, s.objects)

    def update_image(self, logits: torch.Tensor, label: int) -> None:
        """A window's image-class logits (1, classes) against its image's class id."""
        self.correct += int(int(logits.argmax(-1)) == label)
        self.seen += 1

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.seg is not None:
            out.update(segmentation_report(self.seg, self.dominant, self.class_names))
        if self.det is not None:  # F1 at the threshold that is best on these windows: the one the checkpoint carries
            out["f1"], out["score_threshold"] = self.det.best(fallback=self.fallback)
            tp, fp, fn = self.det.counts(out["score_threshold"])
            out["precision"] = tp / max(tp + fp, 1)
            out["recall"] = tp / max(tp + fn, 1)
            out["objects"] = self.det.objects  # how much evidence the threshold rests on
        if self.seen:
            out["accuracy"] = self.correct / self.seen
        scores = [v for k, v in out.items() if k in ("minority_iou", "f1", "accuracy") and not np.isnan(v)]
        out["score"] = float(np.mean(scores)) if scores else float("nan")
        return out


__all__ = ["CALIBRATION_FLOOR", "Validation"]
