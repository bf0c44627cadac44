"""Prefetching region reader: decoding overlaps compute, memory stays bounded.

Regions are read on a small thread pool, at most ``depth`` ahead of the consumer, so JPEG/JP2K decoding (which
releases the GIL in imagecodecs/OpenSlide) runs while torch computes, and a slow disk never lets the queue grow.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # types only: the plan imports the mask, whose alpha fill resamples with this module
    from ..io import LargeImage
    from .plan import Plan, Region


def read_region_pixels(image: LargeImage, plan: Plan, region: Region) -> np.ndarray:
    """Pixels of ``region.box`` at the plan's analysis resolution, (R, R, C), zero/NaN-free padded past the edge.

    Reads at the plan's level and resamples (area-average down, nearest up) when the analysis pixel size falls
    between pyramid levels. Float nodata values come back as NaN.
    """
    level = image.levels[plan.level]
    lh, lw = level.shape[:2]
    y0, x0, y1, x1 = region.box
    s = plan.scale
    ly0, lx0 = int(round(y0 * s)), int(round(x0 * s))
    ly1, lx1 = int(round(y1 * s)), int(round(x1 * s))
    read = getattr(image, "read_region", None)
    if read is not None:
        block = read(plan.level, ly0, lx0, ly1 - ly0, lx1 - lx0)
    else:
        block = np.zeros((ly1 - ly0, lx1 - lx0, level.shape[2]), dtype=level.dtype)
        sy1, sx1 = min(ly1, lh), min(lx1, lw)
        if sy1 > ly0 and sx1 > lx0:
            block[: sy1 - ly0, : sx1 - lx0] = np.asarray(level[ly0:sy1, lx0:sx1])
    if s != 1.0:
        block = _resample(block, (y1 - y0, x1 - x0))
    nodata = getattr(image, "nodata", None)
    if nodata is not None and np.isfinite(nodata) and np.issubdtype(block.dtype, np.floating):
        # a SAR scene's nodata (-99, -9999 dB) is no backscatter: as NaN it is normalised to 0 like any other gap,
        # instead of reaching the model as an extreme value (a reprojected scene's corners are full of it)
        block = np.where(block == np.asarray(nodata, dtype=block.dtype), np.nan, block).astype(block.dtype, copy=False)
    return block


def _resample(block: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = block.shape[:2]
    ys = np.minimum(((np.arange(shape[0]) + 0.5) * h / shape[0]).astype(int), h - 1)
    xs = np.minimum(((np.arange(shape[1]) + 0.5) * w / shape[1]).astype(int), w - 1)
    return block[ys][:, xs]


class Prefetcher:
    """Iterate ``(region, pixels or exception)`` in plan order with up to ``depth`` reads in flight."""

    def __init__(self, image: LargeImage, plan: Plan, regions: Iterable[Region], depth: int = 4,
                 workers: int = 2) -> None:
        self._image, self._plan = image, plan
        self._regions = iter(regions)
        self._depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="napari-xt-read")
        self._pending: deque[tuple[Region, Future]] = deque()
        self._closed = threading.Event()

    def start(self) -> None:
        """Submit the first reads now (iterating does it too): the caller may need what the feed sets up."""
        self._fill()

    def _fill(self) -> None:
        while len(self._pending) < self._depth and not self._closed.is_set():
            region = next(self._regions, None)
            if region is None:
                return
            fut = self._pool.submit(read_region_pixels, self._image, self._plan, region)
            self._pending.append((region, fut))

    def __iter__(self) -> Iterator[tuple[Region, np.ndarray | BaseException]]:
        try:
            self._fill()
            while self._pending:
                region, fut = self._pending.popleft()
                self._fill()
                try:
                    yield region, fut.result()
                except Exception as err:  # reported per region by the runner, with its location
                    yield region, err
        finally:
            self.close()

    def close(self) -> None:
        self._closed.set()
        for _, fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
