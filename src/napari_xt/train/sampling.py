"""Which windows an epoch trains on, so that rare classes are seen every epoch, and how imbalanced the labels are.

``window_class_counts`` reads each training window's labels once (labels only, never pixels): the annotated pixels
per class in each window. From those counts come the class weights of the loss (``losses.class_weights``: annotated
pixels only, so sparse painting does not look like a sea of background), the *dominant* class (excluded from the
early-stopping score, so "everything is sea" cannot look like progress) and the epoch's window order.

``epoch_order`` is repeat-factor sampling (as in LVIS): a window holding a class that only a fraction ``f`` of the
windows hold is repeated ``max(1, sqrt(threshold / f))`` times on average, and every class's rarest window is
guaranteed a place in every epoch even when ``max_windows`` keeps only a subset. No window is dropped for being
common, and what is unlabelled is still never a target.
"""

from __future__ import annotations

import math

import numpy as np

from .data import TrainingImage, WindowRef, WindowSet, read_labels
from .losses import label_counts


def window_class_counts(ws: WindowSet, refs: list[WindowRef], num_classes: int) -> np.ndarray:
    """(len(refs), num_classes) annotated pixels per class in each window, at the analysis level."""
    out = np.zeros((len(refs), num_classes), dtype=np.int64)
    for n, ref in enumerate(refs):
        item: TrainingImage = ws.images[ref.image]
        if item.segmentation is None:
            continue
        plan = ws.plans[ref.image]
        for region in ws.regions(ref):
            labels = read_labels(item, plan, region)
            if labels is not None:
                out[n] += label_counts(labels, num_classes)
    return out


def dominant_class(counts: np.ndarray) -> int:
    """The class with the most annotated pixels (-1 when nothing is annotated)."""
    totals = np.asarray(counts).reshape(-1, np.asarray(counts).shape[-1]).sum(0)
    return int(np.argmax(totals)) if totals.sum() > 0 else -1


def repeat_factors(counts: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per window: max over the classes it holds of max(1, sqrt(threshold / share of windows holding the class))."""
    present = np.asarray(counts) > 0
    if present.size == 0:
        return np.ones(len(counts))
    share = present.mean(0)
    with np.errstate(divide="ignore"):
        per_class = np.where(share > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(share, 1e-12))), 1.0)
    return np.where(present, per_class[None, :], 1.0).max(1)


def epoch_order(counts: np.ndarray, rng: np.random.Generator, max_windows: int | None = None,
                threshold: float = 0.5) -> np.ndarray:
    """Window indices for one epoch: each window once or more (repeat factors, stochastically rounded), shuffled;
    with ``max_windows`` a weighted subset that still holds one window of every annotated class."""
    counts = np.asarray(counts)
    n = len(counts)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    factors = repeat_factors(counts, threshold)
    if max_windows is None or max_windows >= n:
        reps = np.floor(factors).astype(np.int64) + (rng.random(n) < factors - np.floor(factors))
        order = np.repeat(np.arange(n), reps)
        return rng.permutation(order)
    must: list[int] = []
    present = counts > 0
    for c in np.argsort(present.sum(0)):  # rarest class first
        holders = np.flatnonzero(present[:, c])
        if holders.size and not np.isin(holders, must).any() and len(must) < max_windows:
            must.append(int(rng.choice(holders)))
    rest = np.setdiff1d(np.arange(n), must)
    k = max(0, max_windows - len(must))
    p = factors[rest] / factors[rest].sum() if rest.size else None
    extra = (rng.choice(rest, size=min(k, rest.size), replace=False, p=p) if rest.size and k
             else np.zeros(0, np.int64))
    return rng.permutation(np.concatenate([np.asarray(must, np.int64), extra.astype(np.int64)]))


def expected_epoch_length(counts: np.ndarray, max_windows: int | None = None, threshold: float = 0.5) -> int:
    """Windows per epoch on average (for progress bars and the schedule)."""
    n = len(counts)
    if max_windows is not None and max_windows < n:
        return max_windows
    return max(1, math.ceil(float(repeat_factors(counts, threshold).sum()))) if n else 1


def window_objects(ws: WindowSet, ref: WindowRef) -> float:
    """Annotated objects whose centres lie in the window's regions: the detection loss's normaliser (CenterNet
    divides by the positives of the batch; per region, an empty region would weigh as much as a crowded one)."""
    ann = ws.images[ref.image].detection
    if ann is None:
        return 0.0
    f = ws.plans[ref.image].downsample_to_level0
    return float(sum(len(ann.in_box(tuple(v * f for v in r.box))) for r in ws.regions(ref)))
