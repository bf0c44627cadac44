"""What a result store holds on disk, apart from the label pyramid (:mod:`.pyramid`) and the metadata
(:mod:`.store_meta`): layout constants, the detections table's rows, and building a new empty store. The parts of
:mod:`.store` that do not need an open store. Pure numpy + zarr; no Qt, no torch.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .pyramid import level_shapes, ngff_label_attrs
from .store_meta import ATTR, FORMAT, clean, now_iso

__all__ = ["DET_COLUMNS", "IDS_CHUNK", "ROWS_CHUNK", "build_store", "detection_rows", "select_detections"]

DET_COLUMNS = ("y", "x", "h", "w", "cls", "score", "region_id", "attempt")
ROWS_CHUNK = 4096
IDS_CHUNK = 1 << 16


def detection_rows(region_id: int, detections: dict[str, Any] | None) -> np.ndarray | None:
    """A region's detection columns as table rows (attempt column left 0), or None for no detections."""
    if not detections:
        return None
    names = DET_COLUMNS[:6]
    missing = [k for k in names if k not in detections]
    extra = [k for k in detections if k not in names and k != "region_id"]
    if missing or extra:
        raise ValueError(f"detections need the columns {list(names)}" + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {extra}" if extra else "") + ".")
    cols = [np.asarray(detections[k]).reshape(-1) for k in names]
    if len({len(c) for c in cols}) != 1:
        raise ValueError(f"detection columns have different lengths {[len(c) for c in cols]}.")
    if len(cols[0]) == 0:
        return None
    rows = np.zeros((len(cols[0]), len(DET_COLUMNS)), dtype=np.float64)
    for i, c in enumerate(cols):
        rows[:, i] = c
    rows[:, 6] = region_id
    return rows


def select_detections(table: np.ndarray, done: np.ndarray, attempt: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of done regions from the attempt that completed them, sorted by region id (stable)."""
    rid = table[:, 6].astype(np.int64)
    ok = (rid >= 0) & (rid < len(done)) & (table[:, 7] > 0)
    ok[ok] = done[rid[ok]] & (attempt[rid[ok]] == table[ok, 7].astype(np.int64))
    table = table[ok]
    table = table[np.argsort(table[:, 6], kind="stable")]
    out = {k: table[:, i].astype(np.float32) for i, k in enumerate(DET_COLUMNS[:6])}
    out["cls"] = table[:, 4].astype(np.int32)
    out["region_id"] = table[:, 6].astype(np.int32)
    return out


def build_store(root_path: Path, spec: Any, meta: dict[str, Any]) -> None:
    """An empty store at ``root_path`` (which must not exist): label pyramid, done flags, detections, and the
    metadata in the root attributes (:mod:`.store_meta`). Built in a hidden folder the caller then moves into place,
    so zarr's own attrs API is atomic enough here: nobody reads the folder before it is complete."""
    root = zarr.open_group(str(root_path), mode="w-", zarr_format=3)
    c = int(spec.chunk)
    if spec.num_classes > 0:
        labels = root.create_group("labels")
        shapes = level_shapes(spec.shape, spec.min_level_size)
        for i, shape in enumerate(shapes):
            labels.create_array(str(i), shape=shape, chunks=(c, c), dtype=spec.label_dtype, fill_value=0)
        labels.attrs.update(ngff_label_attrs(len(shapes), spec.downsample_to_level0, spec.class_names,
                                             spec.class_colors))
        if spec.probabilities:
            probs = root.create_array("probabilities", shape=(spec.num_classes, *spec.shape),
                                      chunks=(1, c, c), dtype=np.uint8, fill_value=0)
            probs.attrs.update({"axes": ["c", "y", "x"], "class_names": list(spec.class_names),
                                "encoding": "probability * 255, rounded"})
    n = max(1, spec.region_count)
    root.create_array("done", shape=(spec.region_count,), chunks=(min(n, IDS_CHUNK),), dtype=bool,
                      fill_value=False)
    det = root.create_group("detections")
    table = det.create_array("table", shape=(0, len(DET_COLUMNS)), chunks=(ROWS_CHUNK, len(DET_COLUMNS)),
                             dtype=np.float64, fill_value=0.0)
    table.attrs["columns"] = list(DET_COLUMNS)
    det.create_array("attempt", shape=(spec.region_count,), chunks=(min(n, IDS_CHUNK),), dtype=np.int64,
                     fill_value=0)
    spec_d = asdict(spec)
    spec_d["shape"] = [int(v) for v in spec.shape]
    root.attrs[ATTR] = clean({**meta, "store_format": FORMAT, "spec": spec_d, "created": now_iso(), "complete": False})
