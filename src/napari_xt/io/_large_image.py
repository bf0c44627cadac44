"""The one image object every backend produces, so the engine and widget never branch on file formats.

Backends hand over *sources*: per-level objects that know how to read a window of pixels as ``(h, w, c)``. This
module turns them into dask arrays, adds lazily coarsened levels, and owns the behaviour that must be identical for
every format: padding at the border, turning decoder failures into :class:`ImageReadError` with a location, sampling
contrast limits without a full-resolution pass, and the nodata mask.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import dask.array as da
import numpy as np

from ..errors import ImageError
from ._geo import Georef

#: dask chunks aim at about this many pixels per side: big enough that a 100k x 100k level is a few thousand
#: tasks (cheap graphs, fast open), small enough that one chunk decodes in tens of milliseconds.
TARGET_CHUNK = 2048


class ImageReadError(ImageError):
    """Raised for any input that cannot be read; the message names the file and says what is wrong."""


class Source(Protocol):
    """One native resolution level of a backend."""

    shape: tuple[int, int, int]  # (h, w, c)
    dtype: np.dtype
    tile: tuple[int, int]  # decoding unit (h, w); reads aligned to it waste nothing

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:  # in-bounds window, (h, w, c)
        ...


def _chunk_len(tile: int, size: int) -> int:
    if tile > 2 * TARGET_CHUNK:  # full-width strips (NDPI, stripped TIFF): cut them, accepting re-decoding
        return min(size, TARGET_CHUNK)
    return min(size, tile * max(1, round(TARGET_CHUNK / tile)))


class _DaskAdapter:
    """Array-like handed to ``da.from_array``: every chunk read goes through :func:`read_window` for error context."""

    def __init__(self, image: LargeImage, level: int, source: Source):
        self._image, self._level, self._source = image, level, source  # level < 0: alpha of level -1 - level
        self.shape, self.dtype, self.ndim = source.shape, np.dtype(source.dtype), 3

    def __getitem__(self, key):
        ys, xs = key[0], key[1]
        cs = key[2] if len(key) > 2 else slice(None)
        out = self._image._read_native(self._level, ys.start or 0, ys.stop, xs.start or 0, xs.stop, self._source)
        return out[:, :, cs]


class LargeImage:
    """A lazily read image pyramid plus the metadata the model and the viewer need (see docs/reader.md)."""

    def __init__(
        self,
        path: str,
        sources: Sequence[Source],
        *,
        format: str,
        vendor: str | None = None,
        pixel_size: tuple[float, float] | None = None,
        pixel_unit: str | None = None,
        band_names: list[str] | None = None,
        kind: str = "generic",
        nodata: float | None = None,
        metadata: dict | None = None,
        tile_size: tuple[int, int] | None = None,
        closers: list[Callable[[], Any]] | None = None,
        name_token: str = "",
        georef: Georef | None = None,
        alpha: Sequence[Source] | None = None,
    ):
        from ._pyramid import coarsen_levels, keep_strictly_smaller

        self.path = path
        sources = keep_strictly_smaller(sources)
        self._sources = sources
        self._closers = list(closers or [])
        self._closed = False
        self.format = format
        self.vendor = vendor
        self.pixel_size = pixel_size
        self.pixel_unit = pixel_unit if pixel_size is not None else None
        self.dtype = np.dtype(sources[0].dtype)
        c = sources[0].shape[2]
        self.band_names = list(band_names) if band_names and len(band_names) == c else _default_bands(c, self.dtype)
        self.kind = kind
        self.nodata = nodata
        self.metadata = metadata or {}
        self.tile_size = tile_size
        #: CRS + level-0 transform of a georeferenced image (None for slides); :meth:`level_georef` for a level
        self.georef = georef
        self._n_native = len(sources)
        native = [self._dask(src, i, format, name_token) for i, src in enumerate(sources)]
        self.levels: list[da.Array] = native + coarsen_levels(native[-1], self.dtype, nodata)
        h0, w0 = self.levels[0].shape[:2]
        self.downsamples = [1.0] + [(h0 / lv.shape[0] + w0 / lv.shape[1]) / 2 for lv in self.levels[1:]]
        # an orthomosaic's alpha band is not a colour: it says where the image is (kept aside, one per level)
        self.alpha: list[da.Array] | None = None
        if alpha:
            amaps = [self._dask(src, -1 - i, format, name_token) for i, src in enumerate(alpha[:len(sources)])]
            self.alpha = amaps + coarsen_levels(amaps[-1], np.dtype(amaps[-1].dtype))
            self.alpha = self.alpha[:len(self.levels)]

    def _dask(self, src: Source, i: int, format: str, name_token: str) -> da.Array:
        h, w, c = src.shape
        chunks = (_chunk_len(src.tile[0], h), _chunk_len(src.tile[1], w), c)
        name = f"napari-xt-{format}-{name_token}-{i}"
        return da.from_array(_DaskAdapter(self, i, src), chunks=chunks, name=name, asarray=False, lock=False,
                             fancy=False, meta=np.empty((0, 0, 0), src.dtype))

    # --- shape helpers -----------------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.levels[0].shape)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def level_for_downsample(self, downsample: float) -> int:
        """Finest level whose downsample does not exceed ``downsample`` (never coarser than asked)."""
        best = 0
        for i, ds in enumerate(self.downsamples):
            if ds <= downsample * (1 + 1e-6):
                best = i
        return best

    # --- pixels ------------------------------------------------------------------------------------------------
    def read_region(self, level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Window of ``level`` as numpy ``(h, w, c)``; zeros where it leaves the image."""
        if not 0 <= level < len(self.levels):
            raise IndexError(f"level {level} out of range: {self.path} has {len(self.levels)} levels")
        if h < 0 or w < 0:
            raise ValueError(f"region size must be non-negative, got h={h}, w={w}")
        arr = self.levels[level]
        H, W, C = arr.shape
        out = np.zeros((h, w, C), dtype=self.dtype)
        y0, y1, x0, x1 = max(y, 0), min(y + h, H), max(x, 0), min(x + w, W)
        if y1 <= y0 or x1 <= x0:
            return out
        if level < self._n_native:
            data = self._read_native(level, y0, y1, x0, x1)
        else:
            data = arr[y0:y1, x0:x1].compute()
        out[y0 - y : y1 - y, x0 - x : x1 - x] = data
        return out

    def _read_native(self, level: int, y0: int, y1: int, x0: int, x1: int, src: Source | None = None) -> np.ndarray:
        if self._closed:
            raise ImageReadError(f"{self.path}: the image was closed; open it again to read pixels")
        src = self._sources[level] if src is None else src
        level = level if level >= 0 else -1 - level
        try:
            return np.asarray(src.read(y0, y1, x0, x1))
        except ImageReadError:
            raise
        except Exception as err:  # decoders raise all kinds of types; find the tile that fails and name it
            ty, tx = self._failing_tile(src, y0, y1, x0, x1)
            where = f"level {level}, y={ty}, x={tx}" if ty is not None else f"level {level}, y={y0}, x={x0}"
            raise ImageReadError(
                f"{self.path}: the pixel data at {where} (tile of {src.tile[0]}x{src.tile[1]} px) cannot be "
                f"decoded; the file is probably damaged there ({type(err).__name__}: {err})"
            ) from err

    @staticmethod
    def _failing_tile(src: Source, y0: int, y1: int, x0: int, x1: int) -> tuple[int | None, int | None]:
        th, tw = src.tile
        H, W = src.shape[:2]
        for ty in range(y0 // th * th, y1, th):
            for tx in range(x0 // tw * tw, x1, tw):
                try:
                    src.read(ty, min(ty + th, H), tx, min(tx + tw, W))
                except Exception:
                    return ty, tx
        return None, None

    # --- derived views -----------------------------------------------------------------------------------------
    def contrast_limits(self) -> tuple[float, float] | None:
        """1st-99th percentile of a sample of the smallest *native* level; None for 8-bit RGB(A)."""
        if self.dtype == np.uint8 and self.shape[2] in (3, 4):
            return None
        sample = self._sample()
        sample = sample.astype(np.float64)
        if self.nodata is not None:
            sample[sample == self.nodata] = np.nan
        finite = sample[np.isfinite(sample)]
        if finite.size == 0:
            return None
        lo, hi = np.percentile(finite, [1, 99])
        if not hi > lo:
            hi = lo + 1.0
        return float(lo), float(hi)

    def _sample(self) -> np.ndarray:
        """Pixels from the smallest native level: whole when small, else a 4x4 grid of 256-px windows."""
        level = self._n_native - 1
        H, W = self._sources[level].shape[:2]
        if H * W <= 2048 * 2048:
            step = max(1, math.ceil(max(H, W) / 1024))
            return self.read_region(level, 0, 0, H, W)[::step, ::step]
        win, parts = 256, []
        for y in np.linspace(0, H - win, 4).astype(int):
            for x in np.linspace(0, W - win, 4).astype(int):
                parts.append(self.read_region(level, int(y), int(x), win, win))
        return np.concatenate([p.reshape(-1, p.shape[2]) for p in parts])

    def nodata_mask(self, level: int) -> da.Array:
        """Lazy ``(y, x)`` bool mask, True where any band is NaN or equals ``nodata``, or the alpha band is 0."""
        arr = self.levels[level]
        mask = da.zeros(arr.shape[:2], dtype=bool, chunks=arr.chunks[:2])
        if np.issubdtype(self.dtype, np.floating):
            mask = mask | da.isnan(arr).any(axis=2)
        if self.nodata is not None and not math.isnan(self.nodata):
            mask = mask | (arr == np.asarray(self.nodata).astype(self.dtype)).any(axis=2)
        if self.alpha is not None:
            mask = mask | (self.alpha[level][..., 0] == 0).rechunk(arr.chunks[:2])
        return mask

    def level_georef(self, level: int) -> Georef | None:
        """The georef of ``level``: level 0's, scaled by the level's exact size ratio per axis (as GDAL does)."""
        if self.georef is None:
            return None
        h0, w0 = self.levels[0].shape[:2]
        h, w = self.levels[level].shape[:2]
        return self.georef.scaled(h0 / h, w0 / w)

    # --- lifetime ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for closer in self._closers:
            with contextlib.suppress(Exception):  # closing must never fail a caller's cleanup path
                closer()

    def __enter__(self) -> LargeImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"LargeImage({self.path!r}, format={self.format!r}, vendor={self.vendor!r}, shape={self.shape}, "
                f"levels={self.n_levels}, dtype={self.dtype}, kind={self.kind!r})")


def _default_bands(c: int, dtype: np.dtype) -> list[str]:
    if c in (3, 4) and dtype == np.uint8:
        return ["R", "G", "B", "A"][:c]
    if c == 1:
        return ["gray"] if not np.issubdtype(dtype, np.floating) else ["band_1"]
    return [f"C{i}" for i in range(c)]
