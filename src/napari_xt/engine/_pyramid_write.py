"""On-disk layout of the result store: label pyramid geometry, strided per-region writes, NGFF metadata, building a
new empty store, and atomic meta.json writes (the parts of :mod:`.store` that do not need an open store).

Level ``L`` pixel ``(i, j)`` is the level-0 pixel ``(i * 2**L, j * 2**L)`` (strided sampling, no averaging: labels
are categories). A region owns the lower-level pixels whose *sample point* lies inside its core, so cores that tile
level 0 exactly once also tile every lower level exactly once, and the pyramid is the same whatever order regions
finish in. Pure numpy + zarr; no Qt, no torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path

import numpy as np
import zarr

FORMAT = 1
META = "meta.json"
DET_COLUMNS = ("y", "x", "h", "w", "cls", "score", "region_id", "attempt")
ROWS_CHUNK = 4096
IDS_CHUNK = 1 << 16


Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open


def level_shapes(shape: tuple[int, int], min_level_size: int) -> list[tuple[int, int]]:
    """Level 0 is ``shape``; add 2x smaller levels (ceil) while the last one is still >= ``min_level_size``."""
    shapes = [(int(shape[0]), int(shape[1]))]
    while max(shapes[-1]) >= min_level_size and max(shapes[-1]) > 1:
        h, w = shapes[-1]
        shapes.append(((h + 1) // 2, (w + 1) // 2))
    return shapes


def _owned(lo: int, hi: int, step: int) -> tuple[int, int]:
    """Level indices ``i`` with ``lo <= i * step < hi``: ``[ceil(lo / step), ceil(hi / step))``."""
    return -(-lo // step), -(-hi // step)


def strided_parts(box: Box, level: int) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Where a region's core lands on ``level``: (destination slices on the level, source slices into the core data).

    ``None`` when the core contains no sample point of that level (a core thinner than ``2**level`` can miss all).
    """
    y0, x0, y1, x1 = box
    s = 1 << level
    i0, i1 = _owned(y0, y1, s)
    j0, j1 = _owned(x0, x1, s)
    if i0 >= i1 or j0 >= j1:
        return None
    dst = (slice(i0, i1), slice(j0, j1))
    src = (slice(i0 * s - y0, y1 - y0, s), slice(j0 * s - x0, x1 - x0, s))
    return dst, src


def write_strided(levels: Sequence, box: Box, data: np.ndarray) -> None:
    """Write ``data`` (the core, level-0 resolution) into every level of ``levels`` (zarr arrays, level 0 first)."""
    for level, arr in enumerate(levels):
        parts = strided_parts(box, level)
        if parts is None:
            continue
        dst, src = parts
        arr[dst] = data[src]


def ngff_label_attrs(n_levels: int, downsample_to_level0: float, class_names: Sequence[str],
                     class_colors: Sequence[Sequence[int]]) -> dict:
    """OME-NGFF 0.5 style ``multiscales`` + ``image-label`` attributes for the ``labels`` group.

    Coordinates are level-0 *image* pixels, so the pyramid overlays the source image directly: level ``L`` has scale
    ``f * 2**L`` (``f`` = analysis px -> level-0 px) and a translation that puts analysis pixel centres where they are
    on level 0 (``(f - 1) / 2``; the strided levels sample pixel centres, so they share it).
    """
    f = float(downsample_to_level0)
    shift = (f - 1.0) / 2.0
    datasets = [
        {
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": [f * 2**level, f * 2**level]},
                {"type": "translation", "translation": [shift, shift]},
            ],
        }
        for level in range(n_levels)
    ]
    multiscales = [{
        "name": "labels",
        "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": datasets,
        "type": "strided (nearest) sampling",
        "metadata": {"method": "level L pixel (i, j) = level-0 pixel (i * 2**L, j * 2**L)"},
    }]
    colors, properties = [], []
    for value, name in enumerate(class_names):
        properties.append({"label-value": value, "class": str(name)})
    for value, rgb in enumerate(class_colors):
        rgba = [int(c) for c in list(rgb)[:4]]
        if len(rgba) == 3:
            rgba.append(255)
        colors.append({"label-value": value, "rgba": rgba})
    label = {"version": "0.5", "colors": colors, "properties": properties}
    return {"ome": {"version": "0.5", "multiscales": multiscales, "image-label": label}}


def detection_rows(region_id: int, detections: dict | None) -> np.ndarray | None:
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


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    return str(obj)  # Path, dtype, enum, ...


def replace_path(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``; an old ``dst`` folder is moved aside first and removed only after the move, so
    ``dst`` is at every moment either the old result or the new one (stores and exports both rely on it)."""
    if dst.is_dir() and not dst.is_symlink():
        trash = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.replaced")
        os.replace(dst, trash)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(trash, dst)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=jsonable)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def mirror(meta: dict) -> dict:
    """The fields of meta.json that are mirrored into the root attributes (small; no model config or plan)."""
    keys = ("store_format", "spec", "model", "model_checksum", "image", "image_shape", "image_fingerprint",
            "plan_checksum", "started", "created", "finished", "software", "complete")
    return {k: meta[k] for k in keys if k in meta}


def build_store(root_path: Path, spec, meta: dict) -> None:
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
    full = {**meta, "store_format": FORMAT, "spec": spec_d, "created": now_iso(), "complete": False}
    root.attrs["napari_xt"] = json.loads(json.dumps(mirror(full), default=jsonable))
    write_json_atomic(root_path / META, full)
