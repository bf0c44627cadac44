"""Direct chunk writes for the result store's own zarr v3 arrays: the store write at a few ms per region.

Why: zarr's sync API costs ~2.5 ms per ``arr[sel] = v`` on this machine whatever the size (a hop to its event loop
and back, thread-pool codec calls), while encoding and writing one 512² uint8 chunk costs ~0.4 ms. A region touches
one chunk per label level plus the done map (7 calls: 18 ms measured), and every lower level is a read-modify-write
of a chunk another region shares. This writer encodes chunks itself, exactly as the array's metadata says (zarr v3
spec: regular grid, default ``c/i/j`` keys, ``bytes`` + ``zstd``), replaces each chunk file atomically (readers never
see half a chunk, as with zarr), and keeps the chunks it has partly filled in a small LRU cache so a read-modify-write
reads nothing from disk. Anything it does not recognise (another codec chain, another store type) goes through
zarr's own ``__setitem__``: the fast path is an optimisation, never a format.

One writer per store at a time (the store's rule already): the cache mirrors what this process wrote. With
``keep_empty`` a fill-only chunk is written as a file too (zarr's default leaves it out), so that a missing file
always means lost data: the result store's damage checks rely on it (:mod:`.check`). A chunk that cannot be
decoded is a :class:`~napari_xt.errors.StoreDamaged` naming the store, the array and the chunk, not zstd's error.
"""

from __future__ import annotations

import os
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreDamaged

__all__ = ["ChunkWriter", "chunk_layout", "decode_chunk"]

_CACHE_CHUNKS = 64  # partly written chunks kept per array (64 x 256 KiB = 16 MiB for 512² uint8)


def decode_chunk(raw: bytes, zstd: Any, chunks: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """One chunk file's bytes as an array of ``chunks``; ValueError (or the codec's error) when they are not one."""
    buf = zstd.decode(raw) if zstd is not None else raw
    values = np.frombuffer(buf, dtype=dtype)
    want = int(np.prod(chunks))
    if values.size != want:
        raise ValueError(f"it decodes to {values.size} values, a chunk holds {want}")
    return values.reshape(chunks)


def chunk_layout(arr: Any) -> tuple[Path, Any, tuple[int, ...], Any] | None:
    """(array folder, zstd codec or None, chunk shape, key encoder) when chunks can be read and written directly."""
    return _fast_layout(arr)


def _fast_layout(arr: Any) -> tuple[Path, Any, tuple[int, ...], Any] | None:
    """(array folder, zstd codec or None, chunk shape, key encoder) when this writer can write ``arr``, else None."""
    try:
        from zarr.storage import LocalStore

        meta = arr.metadata
        if getattr(meta, "zarr_format", None) != 3 or not isinstance(arr.store, LocalStore):
            return None
        if type(meta.chunk_key_encoding).__name__ != "DefaultChunkKeyEncoding" or \
                getattr(meta.chunk_key_encoding, "separator", "/") != "/":
            return None
        grid = meta.chunk_grid
        if type(grid).__name__ != "RegularChunkGrid":
            return None
        names = [type(c).__name__ for c in meta.codecs]
        if names not in (["BytesCodec"], ["BytesCodec", "ZstdCodec"]):
            return None
        endian = getattr(meta.codecs[0], "endian", None)
        endian = getattr(endian, "value", endian)
        if np.dtype(arr.dtype).itemsize > 1 and endian not in ("little", None):
            return None
        zstd = None
        if len(names) == 2:
            codec = meta.codecs[1]
            if getattr(codec, "checksum", False):
                return None
            from numcodecs import Zstd

            zstd = Zstd(level=int(codec.level))
        folder = Path(str(arr.store.root)) / arr.path
        return folder, zstd, tuple(int(c) for c in grid.chunk_shape), meta.encode_chunk_key
    except Exception:  # any surprise in zarr's internals: use zarr itself
        return None


class ChunkWriter:
    """``writer[slices] = values`` for one zarr v3 array, chunk by chunk; falls back to zarr where it must.

    Only basic slices with step 1 (what the store writes); the values are cast to the array's dtype.
    """

    def __init__(self, arr: Any, cache_chunks: int = _CACHE_CHUNKS, keep_empty: bool = False) -> None:
        self.keep_empty = keep_empty
        if keep_empty and _fast_layout(arr) is None and hasattr(arr, "with_config"):
            arr = arr.with_config(write_empty_chunks=True)  # the zarr path keeps fill-only chunks as files too
        self.array = arr
        self.shape = tuple(int(s) for s in arr.shape)
        self.dtype = np.dtype(arr.dtype).newbyteorder("<") if np.dtype(arr.dtype).itemsize > 1 else np.dtype(
            arr.dtype)
        self.fill = np.asarray(arr.fill_value if arr.fill_value is not None else 0).astype(self.dtype)
        self._layout = _fast_layout(arr)
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._cache_chunks = max(0, int(cache_chunks))
        self._folders: set[Path] = set()  # chunk folders made (or found) by this writer: one mkdir each, not per write

    @property
    def fast(self) -> bool:
        """True when chunks are written directly (False: every write goes through zarr)."""
        return self._layout is not None

    def __setitem__(self, key: tuple[slice, ...] | slice, value: np.ndarray) -> None:
        key = key if isinstance(key, tuple) else (key,)
        key = tuple(key) + (slice(None),) * (len(self.shape) - len(key))
        if self._layout is None or any(not isinstance(k, slice) or k.step not in (None, 1) for k in key):
            self.array[key] = value
            return
        bounds = [k.indices(n)[:2] for k, n in zip(key, self.shape)]
        value = np.asarray(value)
        want = tuple(b - a for a, b in bounds)
        value = np.broadcast_to(value, want) if value.shape != want else value
        _, _, chunks, _ = self._layout
        ranges = [range(a // c, -(-b // c)) for (a, b), c in zip(bounds, chunks) if b > a]
        if len(ranges) < len(chunks):
            return  # an empty selection
        for idx in np.ndindex(*[len(r) for r in ranges]):
            cidx = tuple(r[i] for r, i in zip(ranges, idx))
            self._write_chunk(cidx, bounds, value)

    def _write_chunk(self, cidx: tuple[int, ...], bounds: list[tuple[int, int]], value: np.ndarray) -> None:
        folder, zstd, chunks, key_of = self._layout  # type: ignore[misc]
        starts = [i * c for i, c in zip(cidx, chunks)]
        inner, outer = [], []
        for (a, b), s, c in zip(bounds, starts, chunks):
            lo, hi = max(a, s), min(b, s + c)
            inner.append(slice(lo - s, hi - s))
            outer.append(slice(lo - a, hi - a))
        full = all(sl.start == 0 and sl.stop == min(c, n - s) for sl, c, n, s in zip(inner, chunks, self.shape, starts))
        path = folder / key_of(cidx)
        if full:
            data = np.full(chunks, self.fill, dtype=self.dtype)  # edge chunks are stored at full size (zarr v3)
        else:
            cached = self._cache.pop(cidx, None)
            data = cached if cached is not None else self._read(path, zstd, chunks)
        data[tuple(inner)] = value[tuple(outer)]
        self._put(path, zstd, data)
        if full and cidx not in self._cache:
            return  # written whole in one go: nobody will read-modify-write it (a rewrite reads it from disk)
        self._cache[cidx] = data
        while len(self._cache) > self._cache_chunks:
            self._cache.popitem(last=False)

    def _read(self, path: Path, zstd: Any, chunks: tuple[int, ...]) -> np.ndarray:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return np.full(chunks, self.fill, dtype=self.dtype)
        try:
            return decode_chunk(raw, zstd, chunks, self.dtype).copy()
        except Exception as err:  # zstd's "decompression error", a wrong size: the chunk file is damaged
            root = Path(str(self.array.store.root))
            key = path.relative_to(root / self.array.path).as_posix()
            raise StoreDamaged(root, self.array.path, f"chunk {key} cannot be decoded ({err})", fix="verify") from None

    def _put(self, path: Path, zstd: Any, data: np.ndarray) -> None:
        if not self.keep_empty and not np.any(data != self.fill):  # zarr's rule: a fill-only chunk has no file
            if path.exists():
                path.unlink()
            return
        raw = np.ascontiguousarray(data, dtype=self.dtype).tobytes()
        payload = zstd.encode(raw) if zstd is not None else raw
        folder = path.parent
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            try:
                tmp.write_bytes(payload)
            except FileNotFoundError:  # the folder went away since (a store deleted under us): make it again
                folder.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(payload)
            os.replace(tmp, path)  # a reader sees the old chunk or the new one, never half of one
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
