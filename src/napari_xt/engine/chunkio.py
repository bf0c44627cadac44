"""Old home of the direct chunk writer, kept for code that imports it: see :mod:`napari_xt.store.chunkio`."""

from __future__ import annotations

from ..store.chunkio import ChunkWriter

__all__ = ["ChunkWriter"]
