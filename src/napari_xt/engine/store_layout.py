"""Old home of the store layout, kept for code that imports it: see :mod:`napari_xt.store.layout`."""

from __future__ import annotations

from ..store.layout import DET_COLUMNS, StoreSpec, found_once

__all__ = ["DET_COLUMNS", "StoreSpec", "found_once"]
