"""Turn a store into the format-1 layout earlier releases wrote: the whole metadata in ``meta.json`` at the store's
root, and only a small mirror of it in the root group's attributes (the exact keys format 1 mirrored).

Tests of every reader (engine, exports, the napari reader) build old stores with it, so reading old stores stays
tested after the metadata moved into the attributes (format 2).
"""

from __future__ import annotations

import json
from pathlib import Path

# format 1's engine/store_layout.mirror(): the fields it copied into attrs["napari_xt"]
MIRRORED = ("store_format", "spec", "model", "model_checksum", "image", "image_shape", "image_fingerprint",
            "plan_checksum", "started", "created", "finished", "software", "complete")


def make_format_1(path: str | Path) -> dict:
    """Rewrite the (format-2) store at ``path`` as format 1 in place; returns the metadata now in ``meta.json``."""
    path = Path(path)
    doc = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    meta = {**doc["attributes"]["napari_xt"], "store_format": 1}
    (path / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    doc["attributes"]["napari_xt"] = {k: meta[k] for k in MIRRORED if k in meta}
    (path / "zarr.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return meta
