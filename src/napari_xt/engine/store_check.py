"""Old home of the store checks, kept for code that imports it: see :mod:`napari_xt.store.check` and
:mod:`napari_xt.store.verify`."""

from __future__ import annotations

from ..store.check import as_error, chunk_damage, region_cores, repair
from ..store.verify import Report, verify

__all__ = ["Report", "as_error", "chunk_damage", "region_cores", "repair", "verify"]
