"""Reading a result store's arrays so that a damaged chunk is named, never zarr's or zstd's own error.

Why: a chunk file overwritten with garbage made exports fail with ``Zstd decompression error: invalid input data``
and a chunk of another dtype with ``cannot reshape array of size 32768 into shape (512,512)``: true, but neither says
which store, which array, or what to do. :class:`CheckedArray` wraps a zarr array for readers (exporters, the napari
reader): a failing read is retried chunk by chunk to find the chunk files at fault, and becomes a
:class:`~napari_xt.errors.StoreDamaged` naming them; a viewer passes ``on_damage`` instead, is told once, and the
damaged chunks read as background (it must not draw a traceback on every pan). :func:`read_all` reads a whole small
array (done flags, attempts, the detections table), setting aside the chunks that cannot be decoded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreDamaged

__all__ = ["CheckedArray", "chunk_key", "read_all"]


def chunk_key(index: tuple[int, ...]) -> str:
    """The zarr v3 default key of a chunk (``c/i/j``), as the store writes it."""
    return "/".join(["c", *map(str, index)])


def _chunk_slices(shape: tuple[int, ...], chunks: tuple[int, ...], index: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, shape, strict=True))


def read_all(arr: Any) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The whole of ``arr`` and the chunk indices that could not be read (their values are the fill value)."""
    try:
        return np.asarray(arr[...]), []
    except Exception:  # any codec or shape error: find the chunks at fault one by one
        pass
    shape, chunks = tuple(arr.shape), tuple(arr.chunks)
    out = np.full(shape, arr.fill_value if arr.fill_value is not None else 0, dtype=arr.dtype)
    bad = []
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(shape, chunks, strict=True))):
        sl = _chunk_slices(shape, chunks, index)
        try:
            out[sl] = arr[sl]
        except Exception:
            bad.append(index)
    return out, bad


class CheckedArray:
    """A store array for readers: zarr's reads, with damaged chunks named (store, array, chunk files).

    ``on_damage`` (a viewer): called once per array with the error, and damaged chunks read as the fill value.
    Everything else (``shape``, ``dtype``, ``chunks``, ``attrs``, ...) is the zarr array's.
    """

    def __init__(self, array: Any, store: str | Path, part: str,
                 on_damage: Callable[[StoreDamaged], None] | None = None) -> None:
        self.array, self.store, self.part, self.on_damage = array, Path(store), part, on_damage
        self._told = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.array, name)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.array.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.array.shape))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = np.asarray(self[...])
        return values if dtype is None else values.astype(dtype)

    def __repr__(self) -> str:
        return f"CheckedArray({self.store}/{self.part}, shape={self.shape}, dtype={self.dtype})"

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.array[key]
        except Exception as err:  # zstd, reshape, a vanished file: named below
            boxes = self._boxes(key)
            if boxes is None:  # fancy indexing: no chunk-by-chunk retry, but still named
                raise StoreDamaged(self.store, self.part, f"a read failed ({type(err).__name__}: {err})",
                                   fix="verify") from None
            bad = [index for index in self._chunks_in(boxes) if not self._reads(index)]
            keys = ", ".join(chunk_key(i) for i in bad[:4]) + (", ..." if len(bad) > 4 else "")
            what = f"chunk{'s' if len(bad) != 1 else ''} {keys}" if bad else "a chunk"
            damage = StoreDamaged(self.store, self.part, f"{what} cannot be decoded ({type(err).__name__}: {err})",
                                  fix="verify")
            if self.on_damage is None:
                raise damage from None
            if not self._told:
                self._told = True
                self.on_damage(damage)
            return self._read_around(key, boxes, set(bad))

    # -- chunk by chunk ---------------------------------------------------------------------------------------
    def _boxes(self, key: Any) -> list[tuple[int, int, int]] | None:
        """Per dimension (start, stop, step) of a basic selection, or None for anything else."""
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(n for n, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        key = key + (slice(None),) * (self.ndim - len(key))
        boxes = []
        for k, n in zip(key, self.shape, strict=False):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 1:
                    return None
                boxes.append((start, max(start, stop), step))
            elif isinstance(k, (int, np.integer)):
                i = int(k) + (n if k < 0 else 0)
                boxes.append((i, i + 1, 0))  # step 0: an integer index (its axis is dropped)
            else:
                return None
        return boxes if len(boxes) == self.ndim else None

    def _chunks_in(self, boxes: list[tuple[int, int, int]]) -> list[tuple[int, ...]]:
        chunks = tuple(self.array.chunks)
        ranges = [range(a // c, -(-b // c)) if b > a else range(0) for (a, b, _), c in zip(boxes, chunks, strict=True)]
        return list(itertools.product(*ranges))

    def _reads(self, index: tuple[int, ...]) -> bool:
        try:
            self.array[_chunk_slices(self.shape, tuple(self.array.chunks), index)]
            return True
        except Exception:
            return False

    def _read_around(self, key: Any, boxes: list[tuple[int, int, int]], bad: set[tuple[int, ...]]) -> np.ndarray:
        """The selection with the ``bad`` chunks as the fill value (read chunk by chunk)."""
        chunks = tuple(self.array.chunks)
        fill = self.array.fill_value if self.array.fill_value is not None else 0
        dims = [len(range(a, b, s or 1)) for a, b, s in boxes]
        out = np.full(dims, fill, dtype=self.dtype)
        for index in self._chunks_in(boxes):
            if index in bad:
                continue
            src, dst = [], []
            for (a, b, s), i, c in zip(boxes, index, chunks, strict=True):
                step = s or 1
                lo, hi = max(a, i * c), min(b, (i + 1) * c)
                first = a + -(-(lo - a) // step) * step  # the first selected index inside this chunk
                if first >= hi:
                    break
                n = len(range(first, hi, step))
                src.append(slice(first, first + (n - 1) * step + 1, step))
                dst.append(slice((first - a) // step, (first - a) // step + n))
            else:
                out[tuple(dst)] = self.array[tuple(src)]
        return out[tuple(0 if s == 0 else slice(None) for _, _, s in boxes)]
