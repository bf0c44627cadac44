"""Old home of the result store, kept for code that imports it: see :mod:`napari_xt.store`."""

from __future__ import annotations

from ..store import ResultStore, StoreSpec, is_store, read_meta

__all__ = ["ResultStore", "StoreSpec", "is_store", "read_meta"]
