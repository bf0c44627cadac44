"""The classification heat map, painted one way for a live run (the dock's ``ScoreMap``) and for a store opened in
napari (the store reader): one float per raster cell, ``scores[window_map]`` for the class shown.

Plain numpy, no Qt and no napari: the dock and the reader hand over their layers' geometry and get arrays and layer
keywords back, so a reopened store's heat map lies exactly where the live one did and the dock's Resume reuses it
(it finds the layer by :func:`heat_marker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .events import ScoreLayout

HEAT_COLORMAP = "inferno"

__all__ = ["HEAT_COLORMAP", "contrast", "heat_layer_kwargs", "heat_marker", "mean_scores", "paint", "store_layout"]


def heat_marker(store_path: str | Path) -> dict[str, Any]:
    """``metadata["napari_xt"]`` of a store's heat-map layer (how the dock finds the layer again)."""
    return {"store": str(store_path), "heat_map": True}


def heat_layer_kwargs(layout: ScoreLayout, scale: Any, translate: Any, store_path: str | Path) -> dict[str, Any]:
    """Name, placement and look of the heat-map Image layer over an image layer with ``scale`` and ``translate``."""
    scale = np.asarray(scale, dtype=float)[-2:]
    translate = np.asarray(translate, dtype=float)[-2:]
    cell = layout.cell_level0
    return {
        "name": f"xT window scores [{Path(store_path).name}]",
        "scale": tuple(scale * cell),
        # a cell covers `cell` image pixels from the image's top-left corner: put its centre on theirs
        "translate": tuple(translate + (cell - 1) / 2 * scale),
        "metadata": {"napari_xt": heat_marker(store_path)},
        "colormap": HEAT_COLORMAP, "opacity": 0.5, "blending": "translucent",
    }


def mean_scores(scores: dict[int, np.ndarray], image_scores: np.ndarray | None) -> np.ndarray | None:
    """The image's class scores: the store's image scores when known, else the mean of the windows scored so far."""
    if image_scores is not None:
        return np.asarray(image_scores, dtype=np.float32)
    if not scores:
        return None
    return np.mean(np.stack(list(scores.values())), axis=0)


def paint(layout: ScoreLayout, scores: dict[int, np.ndarray], cls: int | None,
          out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(heat, lut)``: class ``cls``'s score per raster cell (NaN where no window or no score yet), written into
    ``out`` when given (the live layer's own array), and the per-window lookup table it came from."""
    n_windows = max([*layout.boxes, *scores, -1]) + 1
    lut = np.full(n_windows + 1, np.nan, dtype=np.float32)  # the last entry is "no window" (-1)
    if cls is not None:
        for w, s in scores.items():
            if 0 <= w < n_windows and cls < len(s):
                lut[w] = s[cls]
    if out is None:
        out = np.empty(layout.window_map.shape, dtype=np.float32)
    np.take(lut, layout.window_map, out=out, mode="wrap")
    return out, lut


def contrast(lut: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """``(contrast limits, their range)`` spanning the painted scores, or None when nothing is painted yet."""
    values = lut[np.isfinite(lut)]
    if not values.size:
        return None
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-3:
        lo, hi = lo - 5e-4, hi + 5e-4
    return (lo, hi), (min(0.0, lo), max(1.0, hi))


def store_layout(store: Any) -> ScoreLayout | None:
    """The heat-map layout of a store opened without a run (an open ``ResultStore``), with its window scores; None
    when its model has no classification head, no window was scored, or its plan does not rebuild exactly.

    Imports the engine's plan (and torch with it): only call it for a store that has window scores.
    """
    cfg = store.meta.get("model_config") or {}
    if "classification" not in (cfg.get("heads") or {}) or not store.window_scores():
        return None
    from ..engine.store_plan import plan_from_meta
    from .scores import score_layout

    plan = plan_from_meta(store.meta)
    if plan is None:
        return None
    return score_layout(plan, cfg["heads"], cfg.get("class_names") or {}, cfg.get("class_colors") or {},
                        store.window_scores())
