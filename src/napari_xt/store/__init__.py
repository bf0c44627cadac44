"""The result store: one zarr v3 folder that is the single source of truth of a run, torch-free.

The viewer's layers view it, resume reads and repairs it, exporters and the napari reader read it; none of them needs
torch, so this package imports none (``tests/test_architecture.py`` checks it in a fresh process). Its modules:

* :mod:`.results`: :class:`ResultStore` (create, open, open for resume, write a region, read tables, finish);
* :mod:`.meta`: the metadata document in ``zarr.json`` (read, write atomically, ``is_store``);
* :mod:`.layout`: :class:`StoreSpec` and the arrays a store holds (made by :func:`.layout.build_store`);
* :mod:`.schema`: a store's layout checked against its own metadata (:class:`.schema.Damage`);
* :mod:`.chunkio`, :mod:`.read`, :mod:`.label_pyramid`: chunk files written and read directly, the label levels;
* :mod:`.check`, :mod:`.repair`, :mod:`.verify`: done regions whose results are lost, found, repaired, reported;
* :mod:`.identity`: which model, image and plan made a store (:class:`Identity`), compared on resume and in batches.
"""

from __future__ import annotations

from .identity import IDENTITY_KEYS, Identity
from .layout import StoreSpec
from .meta import is_store, read_meta
from .results import ResultStore
from .schema import looks_like_store

__all__ = ["IDENTITY_KEYS", "Identity", "ResultStore", "StoreSpec", "is_store", "looks_like_store", "read_meta"]
