"""One object, one detection: suppression of detections that describe the same object (numpy only, no torch).

A leaf module because two layers need the same rule: the model's decoding (peaks of one region's heat map) and the
store's readers (regions' detections side by side). Two detections of one class are the same object when their
centres are closer than half the larger object's size (``sqrt(h * w)``), or :data:`POINT_RADIUS` px for detections
without a size; the higher score wins, best first (greedy NMS on centre distance).
"""

from __future__ import annotations

import numpy as np

__all__ = ["POINT_RADIUS", "same_object_keep"]

#: Two detections without sizes (a points-only model) closer than this many px are one object.
POINT_RADIUS = 8.0


def same_object_keep(y: np.ndarray, x: np.ndarray, h: np.ndarray, w: np.ndarray, cls: np.ndarray,
                     score: np.ndarray, group: np.ndarray | None = None,
                     point_radius: float = POINT_RADIUS) -> np.ndarray:
    """Boolean mask of the detections to keep. With ``group`` (e.g. region ids), only detections of different
    groups are compared: each group already decided within itself."""
    n = len(y)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    from scipy.spatial import cKDTree

    size = np.sqrt(np.maximum(np.asarray(h, np.float64) * np.asarray(w, np.float64), 0.0))
    radius = np.where(size > 0, 0.5 * size, point_radius)
    points = np.stack([np.asarray(y, np.float64), np.asarray(x, np.float64)], 1)
    pairs = cKDTree(points).query_pairs(float(radius.max()), output_type="ndarray")
    if not len(pairs):
        return keep
    i, j = pairs[:, 0], pairs[:, 1]
    close = np.hypot(*(points[i] - points[j]).T) < np.maximum(radius[i], radius[j])
    close &= np.asarray(cls)[i] == np.asarray(cls)[j]
    if group is not None:
        close &= np.asarray(group)[i] != np.asarray(group)[j]
    pairs = pairs[close]
    score = np.asarray(score)
    for a, b in pairs[np.argsort(-np.maximum(score[pairs[:, 0]], score[pairs[:, 1]]), kind="stable")]:
        if keep[a] and keep[b]:  # of two survivors the weaker goes; one already suppressed suppresses nothing
            keep[b if score[a] >= score[b] else a] = False
    return keep
