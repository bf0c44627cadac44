"""Lazy lower levels for images stored flat (or with too few levels): napari and the planner need a small level.

Nothing is computed here at open time; each coarse level is a dask graph over the one above, so only what is viewed
gets decoded. Integers are averaged over 2x2 (stride alone aliases textures into moire); floats are strided so
nodata values and NaN survive unchanged and the nodata mask means the same thing at every level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np

if TYPE_CHECKING:
    from ._large_image import Source

#: stop adding levels once both sides are at most this many pixels
SMALLEST_SIDE = 1024


def keep_strictly_smaller(sources: Sequence[Source]) -> list[Source]:
    """Drop native levels that are not strictly smaller in y and x than the one before (odd vendor files)."""
    kept = [sources[0]]
    for src in sources[1:]:
        h, w = src.shape[:2]
        ph, pw = kept[-1].shape[:2]
        if h < ph and w < pw and src.shape[2] == kept[0].shape[2]:
            kept.append(src)
    return kept


def coarsen_levels(last: da.Array, dtype: np.dtype, nodata: float | None = None) -> list[da.Array]:
    """Extra levels below ``last``, each half the size, until both sides are <= SMALLEST_SIDE."""
    out = []
    cur = last
    while max(cur.shape[0], cur.shape[1]) > SMALLEST_SIDE and min(cur.shape[0], cur.shape[1]) >= 2:
        cur = _half(cur, dtype)
        out.append(cur)
    return out


def _half(arr: da.Array, dtype: np.dtype) -> da.Array:
    h, w = (arr.shape[0] // 2) * 2, (arr.shape[1] // 2) * 2
    arr = arr[:h, :w]
    # even chunk sizes so every 2x2 block lies inside one chunk
    arr = arr.rechunk(tuple(_even(c) for c in arr.chunks[:2]) + (arr.chunks[2],))
    if np.issubdtype(dtype, np.floating):
        out = arr[::2, ::2]
    else:
        out = da.map_blocks(_mean2, arr, dtype=dtype, chunks=tuple(tuple(c // 2 for c in cs) for cs in arr.chunks[:2])
                             + (arr.chunks[2],))
    # keep chunks near the target size as levels shrink, so small levels are not thousands of tiny tasks
    target = max(512, min(2048, max(out.chunks[0][0], out.chunks[1][0]) * 2))
    return out.rechunk((target, target, out.shape[2]))


def _even(chunks: tuple[int, ...]) -> tuple[int, ...]:
    size = sum(chunks)
    step = max(2, chunks[0] - chunks[0] % 2)
    full, rest = divmod(size, step)
    return (step,) * full + ((rest,) if rest else ())


def _mean2(block: np.ndarray) -> np.ndarray:
    h, w, c = block.shape
    b = block.reshape(h // 2, 2, w // 2, 2, c).astype(np.float32 if block.itemsize <= 2 else np.float64)
    m = b.mean(axis=(1, 3))
    if np.issubdtype(block.dtype, np.integer):
        m = np.rint(m)
    return m.astype(block.dtype)
