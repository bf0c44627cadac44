"""The result store's label pyramid: level geometry, strided per-region writes, OME-NGFF label attributes.

Level ``L`` pixel ``(i, j)`` is the level-0 pixel ``(i * 2**L, j * 2**L)`` (strided sampling, no averaging: labels
are categories). A region owns the lower-level pixels whose *sample point* lies inside its core, so cores that tile
level 0 exactly once also tile every lower level exactly once, and the pyramid is the same whatever order regions
finish in. Public because the exporters lay out their OME-Zarr labels the same way. Pure numpy; no Qt, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

__all__ = ["Box", "level_shapes", "ngff_label_attrs", "strided_parts", "write_strided"]

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open


def level_shapes(shape: tuple[int, int], min_level_size: int) -> list[tuple[int, int]]:
    """Level 0 is ``shape``; add 2x smaller levels (ceil) while the last one is still >= ``min_level_size``."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) >= min_level_size and max(shapes[-1]) > 1:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _owned(lo: int, hi: int, step: int) -> tuple[int, int]:
    """Level indices ``i`` with ``lo <= i * step < hi``: ``[ceil(lo / step), ceil(hi / step))``."""
    return -(-lo // step), -(-hi // step)


def strided_parts(box: Box, level: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where a region's core lands on ``level``: (destination slices on the level, source slices into the core data).

    ``None`` when the core contains no sample point of that level (a core thinner than ``2**level`` can miss all).
    """
    y0, x0, y1, x1 = box
    s = 1 << level
    i0, i1 = _owned(y0, y1, s)
    j0, j1 = _owned(x0, x1, s)
    if i0 >= i1 or j0 >= j1:
        return None
    dst = (slice(i0, i1), slice(j0, j1))
    src = (slice(i0 * s - y0, y1 - y0, s), slice(j0 * s - x0, x1 - x0, s))
    return dst, src


def write_strided(levels: Sequence, box: Box, data: np.ndarray, pool: Executor | None = None) -> None:
    """Write ``data`` (the core, level-0 resolution) into every level of ``levels`` (zarr arrays, level 0 first).

    With ``pool`` the levels are written concurrently (they are independent arrays; chunk encoding and file writes
    release the GIL) and the call returns once every level is on disk, raising the first error.
    """
    jobs = []
    for level, arr in enumerate(levels):
        parts = strided_parts(box, level)
        if parts is None:
            continue
        dst, src = parts
        if pool is None:
            arr[dst] = data[src]
        else:
            jobs.append(pool.submit(arr.__setitem__, dst, np.ascontiguousarray(data[src])))
    errors = [err for err in (job.exception() for job in jobs) if err is not None]  # waits for every level
    if errors:
        raise errors[0]


def ngff_label_attrs(n_levels: int, downsample_to_level0: float, class_names: Sequence[str],
                     class_colors: Sequence[Sequence[int]]) -> dict[str, Any]:
    """OME-NGFF 0.5 style ``multiscales`` + ``image-label`` attributes for the ``labels`` group.

    Coordinates are level-0 *image* pixels, so the pyramid overlays the source image directly: level ``L`` has scale
    ``f * 2**L`` (``f`` = analysis px -> level-0 px) and a translation that puts analysis pixel centres where they are
    on level 0 (``(f - 1) / 2``; the strided levels sample pixel centres, so they share it).
    """
    f = float(downsample_to_level0)
    shift = (f - 1.0) / 2.0
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": [f * 2**level, f * 2**level]},
                {"type": "translation", "translation": [shift, shift]},
            ],
        }
        for level in range(n_levels)
    ]
    multiscales = [{
        "name": "labels",
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": datasets,
        "type": "strided (nearest) sampling",
        "metadata": {"method": "level L pixel (i, j) = level-0 pixel (i * 2**L, j * 2**L)"},
    }]
    colors: list[dict[str, Any]] = []
    properties: list[dict[str, Any]] = []
    for value, name in enumerate(class_names):
        properties.append({"label-value": value, "class": str(name)})
    for value, rgb in enumerate(class_colors):
        rgba = [int(c) for c in list(rgb)[:4]]
        if len(rgba) == 3:
            rgba.append(255)
        colors.append({"label-value": value, "rgba": rgba})
    label = {"version": "0.5", "colors": colors, "properties": properties}
    return {"ome": {"version": "0.5", "multiscales": multiscales, "image-label": label}}
