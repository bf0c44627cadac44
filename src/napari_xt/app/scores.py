"""Where classification scores go: the coarse raster of window ids the dock paints its heat map through."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .events import MAX_SCORE_CELLS, ScoreLayout

if TYPE_CHECKING:
    from ..engine.plan import Plan


def _cell_size(plan: Plan) -> int:
    """Analysis px per heat-map cell: the largest that keeps every core edge exact, unless the raster gets too big."""
    need = max(1, math.ceil(max(plan.analysis_shape) / MAX_SCORE_CELLS))
    coords = np.array([r.core for r in plan.regions if r.window >= 0], dtype=np.int64).ravel()
    exact = int(np.gcd.reduce(coords)) if coords.size else 1
    if exact >= need:
        return exact
    pitch = plan.region_size - plan.overlap  # regular window edges stay exact; only the last one is rounded
    return next((d for d in range(need, pitch + 1) if pitch % d == 0), need)


def window_boxes(plan: Plan) -> dict[int, tuple[int, int, int, int]]:
    """Window id -> level-0 px bounding box of its regions' cores."""
    bounds: dict[int, tuple[int, int, int, int]] = {}
    for r in plan.regions:
        if r.window < 0:
            continue
        b = bounds.get(r.window, r.core)
        bounds[r.window] = (min(b[0], r.core[0]), min(b[1], r.core[1]), max(b[2], r.core[2]), max(b[3], r.core[3]))
    f = plan.downsample_to_level0
    return {w: (round(b[0] * f), round(b[1] * f), round(b[2] * f), round(b[3] * f)) for w, b in bounds.items()}


def score_layout(plan: Plan, heads: Mapping[str, Mapping[str, Any]], class_names: Mapping[str, Sequence[str]],
                 class_colors: Mapping[str, Sequence[Sequence[int]]],
                 scores: Mapping[int, np.ndarray]) -> ScoreLayout:
    """The heat-map raster of ``plan``'s windows for a model with these ``heads`` (a classification one) and class
    names/colours (by head), with the window ``scores`` a store already holds (a run's, or a store opened alone)."""
    n = int(heads["classification"].get("num_classes", 0))
    names = list(class_names.get("classification", [])) or [f"class {i}" for i in range(n)]
    cell = _cell_size(plan)
    rows, cols = (math.ceil(v / cell) for v in plan.analysis_shape)
    window_map = np.full((rows, cols), -1, dtype=np.int32)
    for r in plan.regions:
        if r.window >= 0:
            y0, x0, y1, x1 = (int(v / cell + 0.5) for v in r.core)  # neighbours share edges: no gaps, no overlaps
            window_map[y0:y1, x0:x1] = r.window
    boxes = window_boxes(plan)
    stored = {w: s for w, s in scores.items() if w in boxes and len(s) == len(names)}
    return ScoreLayout(names, [list(c) for c in class_colors.get("classification", [])], window_map, cell,
                       plan.downsample_to_level0, boxes, stored)
