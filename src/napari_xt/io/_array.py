"""In-memory arrays (numpy, dask, zarr) as a ``LargeImage``: napari layers, tests and scripts use the same engine."""

from __future__ import annotations

import uuid

import numpy as np

from ._large_image import LargeImage


class ArraySource:
    """One pyramid level held by an array-like ((y, x) or (y, x, c)); reads only the window asked for."""

    def __init__(self, array):
        self._array = array
        if array.ndim == 2:
            h, w = array.shape
            c = 1
        else:
            h, w, c = array.shape
        self.shape = (int(h), int(w), int(c))
        self.dtype = np.dtype(array.dtype)
        chunks = getattr(array, "chunksize", None) or getattr(array, "chunks", None)
        ok = isinstance(chunks, tuple) and len(chunks) >= 2 and all(isinstance(v, int) for v in chunks[:2])
        self.tile = (int(chunks[0]), int(chunks[1])) if ok else (512, 512)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        out = np.asarray(self._array[y0:y1, x0:x1])
        return out[..., None] if out.ndim == 2 else out


def array_image(levels, *, pixel_size: float | tuple[float, float] | None = None, pixel_unit: str | None = None,
                kind: str | None = None, band_names: list[str] | None = None, name: str = "array") -> LargeImage:
    """A ``LargeImage`` over one array or a list of them (finest first); coarser levels are added lazily."""
    arrays = list(levels) if isinstance(levels, (list, tuple)) else [levels]
    sources = [ArraySource(a) for a in arrays]
    if isinstance(pixel_size, (int, float)):
        pixel_size = (float(pixel_size), float(pixel_size))
    rgb = sources[0].shape[2] in (3, 4) and sources[0].dtype == np.uint8
    return LargeImage(f"array:{name}", sources, format="array", pixel_size=pixel_size,
                      pixel_unit=pixel_unit or ("um" if pixel_size else None),
                      kind=kind or ("brightfield" if rgb else "generic"), band_names=band_names,
                      name_token=uuid.uuid4().hex[:12])
