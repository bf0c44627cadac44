"""Where a result store keeps its metadata: inside the root group's attributes, so the store is a clean zarr hierarchy.

Format 2 (this version) keeps the whole metadata (model config and checksum, image path/shape/fingerprint, plan,
times, software, summary, ``complete``) in ``zarr.json``'s ``attributes["napari_xt"]``. Format 1 kept it in a
``meta.json`` file at the store's root with a small mirror in those attributes; zarr itself does not know that file,
so every tool listing a store's members (``zarr.open_group(store).members()``) warned "Object at meta.json is not
recognized as a component of a Zarr hierarchy". Format-1 stores are still read (their ``meta.json``), and the first
metadata update by a writer (resume, finish) moves it into the attributes and removes the file.

Updates rewrite the root ``zarr.json`` through a fsynced hidden sibling and a rename (:mod:`napari_xt._atomic`), not
through zarr's attrs API: a reader following a running writer (the viewer, ``ResultStore.refresh``) sees the old
document or the new, never half of one, whatever zarr release wrote the rest. A store's one writer is its only
author of the root document (zarr rewrites a parent's ``zarr.json`` only when it is missing), and it publishes
``complete`` only after every region's data were written, so ``complete`` never appears before the data are on disk.

Values are stored as strict JSON: numpy scalars, sets and dataclasses are converted, and non-finite floats (a NaN
rate in a summary) become ``null``, because other tools parse ``zarr.json`` with strict JSON readers.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_json_atomic
from ..errors import StoreError

__all__ = ["ATTR", "FORMAT", "LEGACY_META", "clean", "is_store", "jsonable", "now_iso", "read_meta", "root_attrs",
           "write_meta"]

FORMAT = 2  # 1: meta.json beside zarr.json; 2: everything in the root group's attributes
ATTR = "napari_xt"
LEGACY_META = "meta.json"
ROOT = "zarr.json"


def now_iso() -> str:
    """UTC now, ISO 8601 (store timestamps)."""
    return _dt.datetime.now(_dt.UTC).isoformat()


def jsonable(obj: Any) -> Any:
    """``json.dumps`` default for metadata values: numpy values, sets, dataclasses; anything else as text."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return str(obj)  # Path, dtype, enum, ...


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def clean(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` as it reads back from disk: plain JSON types, non-finite floats as None."""
    return _finite(json.loads(json.dumps(meta, default=jsonable)))


def _root_document(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((path / ROOT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def root_attrs(path: str | os.PathLike) -> dict[str, Any] | None:
    """``attributes["napari_xt"]`` of the root ``zarr.json`` at ``path``, or None when there is none."""
    doc = _root_document(Path(path))
    attrs = doc.get("attributes") if doc is not None else None
    info = attrs.get(ATTR) if isinstance(attrs, dict) else None
    return info if isinstance(info, dict) else None


def _is_legacy(info: dict[str, Any]) -> bool:
    return int(info.get("store_format", 1)) < 2


def is_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a napari-xt result store: a zarr v3 group with napari-xt attributes (format 2), or with
    a mirror of them plus ``meta.json`` (format 1)."""
    info = root_attrs(path)
    if info is None:
        return False
    return not _is_legacy(info) or (Path(path) / LEGACY_META).is_file()


def meta_of(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The full metadata, given the root attributes ``info`` already read (format 1 reads its ``meta.json``)."""
    if not _is_legacy(info):
        return dict(info)
    meta = json.loads((path / LEGACY_META).read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("meta.json does not hold an object")
    return meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The store's metadata (either format); a :class:`StoreError` sentence when it cannot be read."""
    path = Path(path)
    info = root_attrs(path)
    if info is None:
        raise StoreError(f"{path} is not a napari-xt result store (no zarr.json with napari-xt attributes).", path)
    try:
        return meta_of(path, info)
    except (OSError, ValueError) as err:
        raise StoreError(f"store {path}: its metadata cannot be read ({err}).", path) from err


def write_meta(path: str | os.PathLike, meta: dict[str, Any]) -> dict[str, Any]:
    """Publish ``meta`` (as format 2) in the root ``zarr.json`` at ``path`` in one atomic rename; returns it as read
    back. A format-1 store's ``meta.json`` is removed only after the new document is in place, so a crash in between
    leaves both, and readers prefer the attributes."""
    path = Path(path)
    doc = _root_document(path)
    if doc is None or not isinstance(doc.get("attributes", {}), dict):
        raise StoreError(f"store {path}: its zarr.json is missing or damaged.", path)
    new = clean({**meta, "store_format": FORMAT})
    doc = {**doc, "attributes": {**doc.get("attributes", {}), ATTR: new}}
    write_json_atomic(path / ROOT, doc, default=jsonable)
    (path / LEGACY_META).unlink(missing_ok=True)
    return new
