"""Losses and validation metrics for the three heads.

Unlabelled pixels (``IGNORE``) and detection cells outside the annotated area carry zero weight: with sparse
annotation, what the user did not mark must not teach the model anything (tested: changing such pixels leaves the
loss bit-identical).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data import IGNORE


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cross entropy over labelled pixels; returns (summed loss, labelled pixel count) so chunks average exactly."""
    labelled = int((target != IGNORE).sum())
    if labelled == 0:
        return logits.sum() * 0.0, 0
    loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
    return loss, labelled


def detection_targets(objects: list[dict], num_classes: int, cells: int, stride: int, device) -> dict:
    """CenterNet targets for a batch of regions: Gaussian heat maps, and size/offset at each object's centre cell."""
    n = len(objects)
    heat = np.zeros((n, num_classes, cells, cells), np.float32)
    valid = np.zeros((n, 1, cells, cells), np.float32)
    size = np.zeros((n, 2, cells, cells), np.float32)
    offset = np.zeros((n, 2, cells, cells), np.float32)
    centre = np.zeros((n, 1, cells, cells), np.float32)
    has_size = np.zeros((n, 1, cells, cells), np.float32)
    gy, gx = np.mgrid[0:cells, 0:cells].astype(np.float32) + 0.5
    for i, obj in enumerate(objects):
        valid[i, 0] = obj["valid"]
        for y, x, h, w, c in zip(obj["y"], obj["x"], obj["h"], obj["w"], obj["cls"], strict=True):
            cy, cx = y / stride, x / stride
            extent = math.sqrt(h * w) / stride if (np.isfinite(h) and np.isfinite(w)) else 4.0
            sigma = max(0.8, extent / 6.0)
            g = np.exp(-((gy - cy) ** 2 + (gx - cx) ** 2) / (2 * sigma * sigma))
            np.maximum(heat[i, c], g, out=heat[i, c])
            iy, ix = math.floor(cy), math.floor(cx)
            if 0 <= iy < cells and 0 <= ix < cells:
                heat[i, c, iy, ix] = 1.0
                centre[i, 0, iy, ix] = 1.0
                offset[i, :, iy, ix] = (cy - iy, cx - ix)
                if np.isfinite(h) and np.isfinite(w):
                    size[i, :, iy, ix] = (h, w)
                    has_size[i, 0, iy, ix] = 1.0
    arrays = {"heat": heat, "valid": valid, "size": size, "offset": offset, "centre": centre, "has_size": has_size}
    t = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
    t["centre"] = t["centre"] * t["valid"]
    t["has_size"] = t["has_size"] * t["valid"]
    return t


def detection_loss(out: dict, t: dict, size_weight: float = 0.05) -> tuple[torch.Tensor, float]:
    """Focal loss on the heat map (CenterNet, alpha 2, beta 4) + L1 offset/size at centres; (sum, object count)."""
    logit = out["heatmap"].float()
    p = logit.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = (t["heat"] >= 1.0).float()
    log_p, log_q = F.logsigmoid(logit), F.logsigmoid(-logit)
    pos_term = -((1 - p) ** 2) * log_p * pos
    neg_term = -((1 - t["heat"]) ** 4) * (p ** 2) * log_q * (1 - pos)
    focal = ((pos_term + neg_term) * t["valid"]).sum()
    n_obj = float((pos * t["valid"]).sum())
    offset = (F.l1_loss(out["offset"].float(), t["offset"], reduction="none") * t["centre"]).sum()
    size = (F.l1_loss(out["size"].float(), t["size"], reduction="none") * t["has_size"]).sum()
    return focal + offset + size_weight * size, n_obj


# -- metrics ---------------------------------------------------------------------------------------------------------
class SegmentationMetric:
    """Confusion counts over labelled pixels; ``miou`` averages the classes present in the targets."""

    def __init__(self, num_classes: int):
        self.confusion = np.zeros((num_classes, num_classes), np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        keep = target != IGNORE
        k = self.confusion.shape[0]
        idx = target[keep].astype(np.int64) * k + prediction[keep].astype(np.int64)
        self.confusion += np.bincount(idx, minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        tp = np.diag(self.confusion).astype(float)
        denom = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, tp / denom, np.nan)

    def miou(self) -> float:
        present = self.confusion.sum(1) > 0
        values = self.iou()[present]
        return float(np.nanmean(values)) if values.size else float("nan")


class DetectionMetric:
    """Greedy matching of predicted to annotated centres (same class, within a radius): precision, recall, F1."""

    def __init__(self, radius: float = 8.0):
        self.radius = radius
        self.tp = self.fp = self.fn = 0

    def update(self, pred: dict, truth: dict) -> None:
        valid = truth["valid"]
        cells = valid.shape[0]
        stride = 4
        # predictions and objects outside the annotated area do not count either way
        keep_p = _inside(pred["y"], pred["x"], valid, stride, cells)
        keep_t = _inside(truth["y"], truth["x"], valid, stride, cells)
        py, px, pc, ps = pred["y"][keep_p], pred["x"][keep_p], pred["cls"][keep_p], pred["score"][keep_p]
        ty, tx, tc = truth["y"][keep_t], truth["x"][keep_t], truth["cls"][keep_t]
        used = np.zeros(len(ty), bool)
        for i in np.argsort(-ps):
            d2 = (ty - py[i]) ** 2 + (tx - px[i]) ** 2
            d2[(tc != pc[i]) | used] = np.inf
            j = int(np.argmin(d2)) if len(d2) else -1
            if j >= 0 and d2[j] <= self.radius ** 2:
                used[j] = True
                self.tp += 1
            else:
                self.fp += 1
        self.fn += int((~used).sum())

    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else float("nan")


def _inside(y, x, valid, stride, cells) -> np.ndarray:
    iy = np.floor(np.asarray(y) / stride).astype(int)
    ix = np.floor(np.asarray(x) / stride).astype(int)
    ok = (iy >= 0) & (iy < cells) & (ix >= 0) & (ix < cells)
    out = np.zeros(len(iy), bool)
    out[ok] = valid[iy[ok], ix[ok]]
    return out
