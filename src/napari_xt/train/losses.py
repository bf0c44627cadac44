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

from ..engine.options import DEFAULT_SCORE_THRESHOLD
from .data import IGNORE


def class_weights(counts: np.ndarray, cap: float = 10.0) -> np.ndarray:
    """Capped inverse frequency of the *annotated* pixels per class: the most frequent class gets 1, a class seen
    ``r`` times less gets ``min(r, cap)``; a class never annotated gets 1 (it has no targets, so it cannot matter).

    Why: with ships at 0.1 % of the pixels, plain cross entropy is minimised by calling everything sea. Counts must
    come from annotated pixels only (``IGNORE`` excluded), or sparse painting would look like a sea of background.
    The cap keeps a handful of painted pixels from dominating every step (and from flooding predictions with them).
    """
    counts = np.asarray(counts, dtype=np.float64)
    out = np.ones(len(counts))
    seen = counts > 0
    if seen.any():
        out[seen] = np.minimum(counts[seen].max() / counts[seen], cap)
    return out


def label_counts(target: np.ndarray, num_classes: int) -> np.ndarray:
    """Pixels per class among the annotated pixels of ``target`` (``IGNORE`` never counted)."""
    t = np.asarray(target).reshape(-1)
    t = t[(t != IGNORE) & (t >= 0) & (t < num_classes)]
    return np.bincount(t.astype(np.int64), minlength=num_classes)[:num_classes]


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                      dice: float = 0.0) -> tuple[torch.Tensor, int]:
    """Cross entropy over labelled pixels, optionally class-weighted, plus ``dice`` x soft Dice over labelled pixels.

    Returns (loss x labelled pixel count, labelled pixel count), so chunks of a window average exactly. With
    ``weights`` the cross entropy is the weighted mean (sum of w_i ce_i / sum of w_i); the Dice term averages
    1 - Dice over the classes annotated in this chunk, with probabilities masked to the labelled pixels. Both terms
    see only labelled pixels, so what was not annotated still teaches nothing.
    """
    valid = target != IGNORE
    labelled = int(valid.sum())
    if labelled == 0:
        return logits.sum() * 0.0, 0
    logits = logits.float()
    if weights is None:
        loss = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum") / labelled
    else:
        w = weights.to(logits.device, torch.float32)
        ce = F.cross_entropy(logits, target, weight=w, ignore_index=IGNORE, reduction="sum")
        loss = ce / w[target[valid]].sum()
    if dice > 0:
        loss = loss + dice * soft_dice_loss(logits, target)
    return loss * labelled, labelled


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Mean over the classes present in ``target`` of 1 - soft Dice, over labelled pixels only.

    Dice is insensitive to how many pixels a class has, so a 20-pixel ship counts as much as the sea around it.
    """
    valid = (target != IGNORE).unsqueeze(1)
    probs = logits.float().softmax(1) * valid
    k = logits.shape[1]
    onehot = F.one_hot(target.clamp(min=0), k).permute(0, 3, 1, 2).to(probs.dtype) * valid
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    per_class = 1 - (2 * inter + smooth) / (denom + smooth)
    return per_class[present].mean() if bool(present.any()) else logits.sum() * 0.0


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


#: Heat-map objectives: ``quality`` (default) and ``centernet``; see :func:`detection_loss`.
HEAT_LOSSES = ("quality", "centernet")


def detection_loss(out: dict, t: dict, size_weight: float = 0.05,
                   heat_loss: str = "quality") -> tuple[torch.Tensor, float]:
    """Heat-map loss + L1 offset/size at centres; (sum, object count).

    ``quality``: quality focal loss (GFL) against the Gaussian target itself, ``|y - p|^2 * BCE(p, y)`` on every
    cell, so each cell of an object's Gaussian pulls its score towards the target's value. ``centernet``: the
    original focal loss (alpha 2, beta 4), where only the one centre cell of an object is a positive. Why quality by
    default: with a few hundred CPU steps from ImageNet features, the CenterNet loss left every real tree's peak at
    the same ~0.14 (the balance of one positive cell against the penalty-reduced negatives around it), so no
    threshold separated trees from background on an unseen tile; a target the whole Gaussian shares trains peaks
    that rise towards 1.
    """
    if heat_loss not in HEAT_LOSSES:
        raise ValueError(f"heat loss must be one of {HEAT_LOSSES}, not {heat_loss!r}")
    logit = out["heatmap"].float()
    p = logit.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = (t["heat"] >= 1.0).float()
    if heat_loss == "quality":
        target = t["heat"]
        bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
        focal = (((target - p) ** 2) * bce * t["valid"]).sum()
    else:
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
    """Confusion counts over labelled pixels: per-class IoU and F1, mIoU, and the mean IoU without the dominant class.

    ``miou`` averages the classes present in the targets; ``minority_iou(dominant)`` leaves the dominant class out,
    because with 0.1 % ships "everything is sea" already scores a sea IoU of 0.999 and an mIoU near 0.5.
    """

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

    def f1(self) -> np.ndarray:
        """Per-class pixel F1 (= Dice); NaN for a class neither annotated nor predicted."""
        tp = np.diag(self.confusion).astype(float)
        denom = self.confusion.sum(0) + self.confusion.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denom > 0, 2 * tp / denom, np.nan)

    def predicted(self) -> np.ndarray:
        """Labelled pixels predicted as each class."""
        return self.confusion.sum(0)

    def annotated(self) -> np.ndarray:
        return self.confusion.sum(1)

    def miou(self) -> float:
        present = self.confusion.sum(1) > 0
        values = self.iou()[present]
        return float(np.nanmean(values)) if values.size else float("nan")

    def minority_iou(self, dominant: int) -> float:
        """Mean IoU of the annotated classes other than ``dominant`` (the mIoU when no other class is annotated)."""
        present = self.confusion.sum(1) > 0
        if 0 <= dominant < len(present):
            rest = present.copy()
            rest[dominant] = False
            if rest.any():
                return float(np.nanmean(self.iou()[rest]))
        return self.miou()


class DetectionMetric:
    """Greedy one-to-one matching of predicted to annotated centres (same class, best score first), at every score
    threshold at once: precision, recall and F1 at a threshold, and the threshold with the best F1.

    A prediction matches an annotated object whose centre lies within ``radius`` px, or within half the object's size
    (``0.5 * sqrt(h * w)``) when the annotation has one: a 40 px tree crown found 12 px off its centre is found.
    Greedy matching by descending score makes the matches of the predictions above any threshold the same as matching
    those alone, so one pass scores every threshold (the calibration a model stores with its weights).
    """

    def __init__(self, radius: float = 8.0, stride: float = 4.0):
        self.radius, self.stride = float(radius), float(stride)
        self.scores: list[np.ndarray] = []
        self.hits: list[np.ndarray] = []
        self.objects = 0

    def update(self, pred: dict, truth: dict) -> None:
        valid = truth["valid"]
        cells = valid.shape[0]
        # predictions and objects outside the annotated area do not count either way
        keep_p = _inside(pred["y"], pred["x"], valid, self.stride, cells)
        keep_t = _inside(truth["y"], truth["x"], valid, self.stride, cells)
        py, px, pc, ps = pred["y"][keep_p], pred["x"][keep_p], pred["cls"][keep_p], pred["score"][keep_p]
        ty, tx, tc = truth["y"][keep_t], truth["x"][keep_t], truth["cls"][keep_t]
        size = np.sqrt(np.asarray(truth["h"], float)[keep_t] * np.asarray(truth["w"], float)[keep_t])
        reach = np.where(np.isfinite(size), np.maximum(self.radius, 0.5 * np.nan_to_num(size)), self.radius)
        used = np.zeros(len(ty), bool)
        order = np.argsort(-ps, kind="stable")
        hit = np.zeros(len(order), bool)
        for n, i in enumerate(order):
            d2 = (ty - py[i]) ** 2 + (tx - px[i]) ** 2
            d2[(tc != pc[i]) | used | (d2 > reach ** 2)] = np.inf
            j = int(np.argmin(d2)) if len(d2) else -1
            if j >= 0 and np.isfinite(d2[j]):
                used[j] = True
                hit[n] = True
        self.scores.append(np.asarray(ps, np.float64)[order])
        self.hits.append(hit)
        self.objects += int(len(ty))

    def counts(self, threshold: float) -> tuple[int, int, int]:
        """(tp, fp, fn) counting the predictions scoring at least ``threshold``."""
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        hits = np.concatenate(self.hits) if self.hits else np.zeros(0, bool)
        above = scores >= threshold
        tp = int((hits & above).sum())
        return tp, int((~hits & above).sum()), self.objects - tp

    def f1(self, threshold: float = DEFAULT_SCORE_THRESHOLD) -> float:
        tp, fp, fn = self.counts(threshold)
        denom = 2 * tp + fp + fn
        return 2 * tp / denom if denom else float("nan")

    def best(self, fallback: float = DEFAULT_SCORE_THRESHOLD) -> tuple[float, float]:
        """(best F1, its threshold) over the scores seen; thresholds are the midpoints between scores, so the one
        stored is not balanced on the edge of a single validation prediction. ``fallback`` (the model's calibrated
        threshold, else the default) is the threshold when nothing calibrates one: (nan, fallback) with nothing to
        score, (0, fallback) with no prediction right."""
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        hits = np.concatenate(self.hits) if self.hits else np.zeros(0, bool)
        if self.objects == 0 and not scores.size:
            return float("nan"), fallback
        order = np.argsort(-scores, kind="stable")
        scores, hits = scores[order], hits[order]
        tp = np.cumsum(hits)
        fp = np.cumsum(~hits)
        f1 = 2 * tp / np.maximum(2 * tp + fp + (self.objects - tp), 1)
        if not f1.size or f1.max() <= 0:
            return 0.0, fallback
        k = int(np.argmax(f1))
        below = scores[k + 1] if k + 1 < len(scores) else 0.0
        return float(f1[k]), float(round((scores[k] + below) / 2, 4))


def _inside(y, x, valid, stride, cells) -> np.ndarray:
    iy = np.floor(np.asarray(y) / stride).astype(int)
    ix = np.floor(np.asarray(x) / stride).astype(int)
    ok = (iy >= 0) & (iy < cells) & (ix >= 0) & (ix < cells)
    out = np.zeros(len(iy), bool)
    out[ok] = valid[iy[ok], ix[ok]]
    return out


def segmentation_report(seg: SegmentationMetric, dominant: int, names: list[str] | None) -> dict:
    """Per-class IoU/F1/predicted pixels, mIoU, mean IoU without the dominant class, and the classes that were
    annotated in validation but never predicted (a model that calls everything sea must say so)."""
    k = seg.confusion.shape[0]
    names = list(names or []) + [f"class {i}" for i in range(len(names or []), k)]

    def clean(values) -> list:
        return [None if np.isnan(v) else round(float(v), 4) for v in values]

    annotated, predicted = seg.annotated(), seg.predicted()
    return {"miou": seg.miou(), "minority_iou": seg.minority_iou(dominant), "iou": clean(seg.iou()),
            "class_f1": clean(seg.f1()), "predicted_px": [int(v) for v in predicted],
            "annotated_px": [int(v) for v in annotated], "class_names": names[:k],
            "never_predicted": [names[c] for c in range(k) if annotated[c] > 0 and predicted[c] == 0]}
