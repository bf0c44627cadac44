"""Tables for spreadsheets and scripts: detections and class areas as CSV, classification scores as JSON.

CSV has no place for a "partial" flag that every reader would respect (a comment line breaks many parsers), so a
partial export of a CSV only warns; the JSON records ``"partial": true``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    ExportError,
    check_complete,
    check_out,
    detection_classes,
    open_store,
    pixel_size,
    provenance,
    segmentation_classes,
    written_aside,
)


def export_detections_csv(store, out, *, overwrite: bool = False, partial: bool = False,
                          counts: dict | None = None) -> Path:
    """One row per detection: centre ``x, y`` and ``width, height`` in level-0 px (pixel centres on integers, as in
    napari), class id and name, score, region id; plus the same four in physical units when the pixel size is known.
    """
    store = open_store(store)
    is_partial = check_complete(store, partial)
    out = check_out(out, overwrite, "CSV output")
    det = store.detections()
    n = len(det["y"])
    names, _ = detection_classes(store, int(det["cls"].max()) + 1 if n else 0)
    size = pixel_size(store)
    header = ["x", "y", "width", "height", "class_id", "class_name", "score", "region_id"]
    cols = [det["x"], det["y"], det["w"], det["h"]]
    if size:
        (py, px), _, suffix = size
        header += [f"x_{suffix}", f"y_{suffix}", f"width_{suffix}", f"height_{suffix}"]
        physical = [det["x"] * px, det["y"] * py, det["w"] * px, det["h"] * py]
    with written_aside(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for start in range(0, n, 65536):  # format in batches: bounded Python objects, whatever the row count
            sl = slice(start, start + 65536)
            block = [_fmt(c[sl]) for c in cols]
            block += [det["cls"][sl].tolist(), [names[c] for c in det["cls"][sl].tolist()],
                      _fmt(det["score"][sl], 6), det["region_id"][sl].tolist()]
            if size:
                block += [_fmt(c[sl], 6) for c in physical]
            writer.writerows(zip(*block, strict=True))
    _warn_partial(is_partial, store, out)
    if counts is not None:
        counts.update({"detections": n})
    return out


def export_class_areas_csv(store, out, *, overwrite: bool = False, partial: bool = False,
                           counts: dict | None = None) -> Path:
    """Per class: pixels at the analysis level, area in level-0 px², share of the label map, physical area when
    known. Counted chunk by chunk, so a 100k x 100k label map needs one chunk of memory."""
    store = open_store(store)
    if not store.labels:
        raise ExportError(f"store {store.path} has no label map (the model has no segmentation head), so it has no "
                          "class areas.")
    is_partial = check_complete(store, partial)
    out = check_out(out, overwrite, "CSV output")
    pixels = count_classes(store.labels[0], store.spec.num_classes)
    names, _ = segmentation_classes(store)
    f2 = float(store.spec.downsample_to_level0) ** 2
    size = pixel_size(store)
    total = int(pixels.sum())
    header = ["class_id", "class_name", "pixels", "area_px2", "fraction"]
    if size:
        (py, px), _, suffix = size
        header.append(f"area_{suffix}2")
    with written_aside(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for cls, count in enumerate(pixels.tolist()):
            row = [cls, names[cls] if cls < len(names) else f"class {cls}", count, f"{count * f2:.6g}",
                   f"{count / total:.6f}" if total else "0"]
            if size:
                row.append(f"{count * f2 * py * px:.6g}")
            writer.writerow(row)
    _warn_partial(is_partial, store, out)
    if counts is not None:
        counts.update({"classes": len(pixels), "pixels": total})
    return out


def count_classes(level, num_classes: int) -> np.ndarray:
    """Pixels per label value over a 2-D zarr level, one chunk at a time (at least ``num_classes`` entries)."""
    counts = np.zeros(max(int(num_classes), 1), dtype=np.int64)
    ch, cw = level.chunks
    h, w = level.shape
    for y, x in itertools.product(range(0, h, ch), range(0, w, cw)):
        block = np.asarray(level[y:y + ch, x:x + cw]).ravel()
        found = np.bincount(block)
        if len(found) > len(counts):
            counts = np.pad(counts, (0, len(found) - len(counts)))
        counts[:len(found)] += found
    return counts


def export_scores_json(store, out, *, overwrite: bool = False, partial: bool = False) -> Path:
    """Image-level and per-context-window class scores with class names, as one JSON object."""
    store = open_store(store)
    image = store.image_scores()
    windows = store.window_scores()
    if image is None and not windows:
        raise ExportError(f"store {store.path} has no classification scores (the model had no classification "
                          "head, or no context window finished).")
    is_partial = check_complete(store, partial)
    out = check_out(out, overwrite, "JSON output")
    n = len(image[0]) if image is not None else len(next(iter(windows.values())))
    cfg = store.meta.get("model_config") or {}
    names = list(image[1]) if image is not None and image[1] else []
    names = names or list((cfg.get("class_names") or {}).get("classification") or [])
    names = names[:n] + [f"class {i}" for i in range(len(names), n)]
    plan_windows = (store.meta.get("plan") or {}).get("windows") or []
    entries: list[dict[str, Any]] = []
    doc = {
        "partial": is_partial,
        "class_names": names,
        "image": _scored(image[0], names) if image is not None else None,
        "windows": entries,
        "napari_xt": provenance(store, is_partial),
    }
    for wid in sorted(windows):
        entry = {"window": wid, **_scored(windows[wid], names)}
        if 0 <= wid < len(plan_windows):
            entry["regions"] = [int(r) for r in plan_windows[wid]]
        entries.append(entry)
    with written_aside(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return out


def _scored(scores, names) -> dict:
    values = [float(v) if math.isfinite(float(v)) else None for v in np.asarray(scores).ravel()]
    finite = [(v, i) for i, v in enumerate(values) if v is not None]
    best = max(finite) if finite else None
    return {
        "scores": dict(zip(names, values, strict=True)),
        "top_class": names[best[1]] if best else None,
        "top_score": best[0] if best else None,
    }


def _fmt(values, digits: int = 3) -> list[str]:
    return [f"{v:.{digits}f}".rstrip("0").rstrip(".") for v in np.asarray(values, dtype=np.float64).tolist()]


def _warn_partial(is_partial: bool, store, out: Path) -> None:
    if is_partial:
        warnings.warn(f"{out} comes from an unfinished run ({store.n_done} of {store.spec.region_count} regions of "
                      f"{store.path} done); CSV cannot mark that inside the file.", UserWarning, stacklevel=3)
