"""npe2 writers: napari's *Save Selected Layers* for a Labels layer (OME-Zarr) and a Points layer (GeoJSON, CSV).

They take what napari hands a single-layer writer (``path, data, meta`` with the layer's state), so they also work on
layers that never came from napari-xt; the result-store exporters in :mod:`napari_xt.export` are the richer path
for a finished run. napari asks before replacing a file, so these overwrite, but always through a temporary sibling
renamed into place. Labels are copied chunk by chunk, so a multiscale layer viewing a result store is never loaded
whole.
"""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np

from .export._common import PALETTE, ExportError, check_out, ngff_unit, written_aside

_AXES = {2: ["y", "x"], 3: ["z", "y", "x"], 4: ["t", "z", "y", "x"]}
_SPACE = {"x": "space", "y": "space", "z": "space", "t": "time"}


def write_labels_ome_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """A Labels layer (one array or a multiscale list, level 0 first) -> an NGFF 0.5 OME-Zarr label image."""
    import zarr

    from .export._ome_zarr import copy_blocks, label_attrs

    multiscale = isinstance(data, (list, tuple)) or bool(meta.get("multiscale"))  # napari: MultiScaleData
    levels = [data[i] for i in range(len(data))] if multiscale else [data]
    ndim = len(levels[0].shape)
    if ndim not in _AXES:
        raise ExportError(f"cannot write a {ndim}-D Labels layer as OME-Zarr labels (2-D to 4-D are supported).")
    names = _AXES[ndim]
    out = check_out(path, overwrite=True, what="OME-Zarr output")
    scale0 = _per_axis(meta.get("scale"), ndim, 1.0)
    shift = _per_axis(meta.get("translate"), ndim, 0.0)
    units = list(meta.get("units") or [])[-ndim:]
    axes = []
    for i, name in enumerate(names):
        unit = ngff_unit(units[i]) if i < len(units) else None
        axes.append({"name": name, "type": _SPACE[name], **({"unit": unit} if unit else {})})
    scales = [[s * n0 / n for s, n0, n in zip(scale0, levels[0].shape, lvl.shape, strict=True)] for lvl in levels]
    class_names, colors = _label_classes(meta)
    attrs = label_attrs("0.5", str(meta.get("name") or "labels"), axes, scales, [shift] * len(levels), class_names,
                        colors)
    with written_aside(out) as tmp:
        group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
        for k, level in enumerate(levels):
            chunks = _chunks(level)
            dst = group.create_array(str(k), shape=tuple(level.shape), chunks=chunks, dtype=_label_dtype(level),
                                     fill_value=0, dimension_names=names)
            copy_blocks(level, dst)
        group.attrs.update(attrs)
    return [str(out)]


def write_points_geojson(path: str, data: Any, meta: dict) -> list[str]:
    """A Points layer -> GeoJSON detections (pixel-corner origin, as QuPath reads them), class and score kept."""
    from .export._geojson import classification, feature

    yx = _points_yx(data)
    table = _features(meta, len(yx))
    classes = [str(v) for v in table.pop("class")] if "class" in table else ["object"] * len(yx)
    colors = _class_colours(classes, meta)
    out = check_out(path, overwrite=True, what="GeoJSON output")
    with written_aside(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        header = {"layer": str(meta.get("name", "")),
                  "coordinates": "layer data pixels, origin at the top-left corner of pixel (0, 0)"}
        fh.write('{"type": "FeatureCollection", "napari_xt": ' + json.dumps(header) + ', "features": [\n')
        for i, (y, x) in enumerate(yx.tolist()):
            measurements = {k: _number(v[i]) for k, v in table.items() if _number(v[i]) is not None}
            geometry = f'{{"type": "Point", "coordinates": [{x + 0.5:.3f}, {y + 0.5:.3f}]}}'
            props = {"objectType": "detection", "classification": classification(classes[i], colors[classes[i]]),
                     "isLocked": False, "measurements": measurements}
            fh.write(("" if i == 0 else ",\n") + feature(geometry, props))
        fh.write("\n]}\n")
    return [str(out)]


def write_points_csv(path: str, data: Any, meta: dict) -> list[str]:
    """A Points layer -> CSV: ``x, y`` (layer data px, pixel centres on integers), then the layer's features
    (``class`` and ``score`` first), then ``x, y`` in world units when the layer has a physical scale."""
    yx = _points_yx(data)
    table = _features(meta, len(yx))
    order = [k for k in ("class", "score") if k in table] + [k for k in table if k not in ("class", "score")]
    scale = _per_axis(meta.get("scale"), 2, 1.0)
    shift = _per_axis(meta.get("translate"), 2, 0.0)
    unit = ngff_unit((list(meta.get("units") or [])[-1:] or ["pixel"])[0])
    out = check_out(path, overwrite=True, what="CSV output")
    with written_aside(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        header = ["x", "y", *order]
        if unit:
            header += [f"x_{unit}", f"y_{unit}"]
        writer.writerow(header)
        for i, (y, x) in enumerate(yx.tolist()):
            row = [f"{x:.3f}", f"{y:.3f}", *(table[k][i] for k in order)]
            if unit:
                row += [f"{x * scale[1] + shift[1]:.6g}", f"{y * scale[0] + shift[0]:.6g}"]
            writer.writerow(row)
    return [str(out)]


# -- layer state -> plain values ------------------------------------------------------------------------------
def _per_axis(values, ndim: int, default: float) -> list[float]:
    values = [float(v) for v in (values if values is not None else [])][-ndim:]
    return [default] * (ndim - len(values)) + values


def _chunks(level) -> tuple[int, ...]:
    chunks = getattr(level, "chunks", None)
    if isinstance(chunks, tuple) and chunks and all(isinstance(c, int) for c in chunks):
        return chunks  # zarr: keep the source's chunking, each block is read once
    return tuple([1] * (len(level.shape) - 2) + [min(512, n) for n in level.shape[-2:]])


def _label_dtype(level) -> np.dtype:
    dtype = np.dtype(level.dtype)
    if dtype.kind not in "iub":
        raise ExportError(f"Labels data must be integers to be written as OME-Zarr labels, not {dtype}.")
    return np.dtype(np.uint8) if dtype.kind == "b" else dtype


def _label_classes(meta: dict) -> tuple[list[str], list[list[int]]]:
    """Class names (features ``class``/``name`` by label value) and colours from the layer's colormap."""
    features = meta.get("features")
    names: list[str] = []
    if features is not None and len(features):
        column = next((c for c in ("class", "name", "class_name") if c in features), None)
        if column is not None:
            values = list(features["index"]) if "index" in features else list(range(len(features)))
            if values == list(range(len(values))):
                names = [str(v) for v in features[column]]
    if not names:
        color_dict = getattr(meta.get("colormap"), "color_dict", None) or {}
        top = max((int(k) for k in color_dict if k is not None), default=0)
        names = [f"label {i}" for i in range(top + 1)] if top > 0 else []
    if not names:
        return [], []
    return names, _label_colours(meta.get("colormap"), len(names))


def _label_colours(colormap, n: int) -> list[list[int]]:
    if hasattr(colormap, "map"):
        try:
            rgba = np.asarray(colormap.map(np.arange(n)), dtype=float)
            return [[round(v * 255) for v in c[:3]] for c in rgba]
        except (TypeError, ValueError, IndexError):
            pass
    out = []
    for i in range(n):
        given = colormap.get(i) if isinstance(colormap, dict) else None
        if given is None or isinstance(given, str):
            out.append(PALETTE[i % len(PALETTE)])
            continue
        rgb = np.asarray(given, dtype=float)[:3]
        out.append([round(v) for v in (rgb * 255 if rgb.max() <= 1 else rgb)])
    return out


def _points_yx(data) -> np.ndarray:
    pts = np.asarray(data, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ExportError(f"Points data must be (N, D >= 2) coordinates, not an array of shape {pts.shape}.")
    return pts[:, -2:]


def _features(meta: dict, n: int) -> dict[str, list]:
    features = meta.get("features")
    if features is None or not len(features):
        return {}
    return {str(c): list(features[c]) for c in features.columns if len(features[c]) == n}


def _class_colours(classes: list[str], meta: dict) -> dict[str, list[int]]:
    faces = np.asarray(meta.get("face_color") if meta.get("face_color") is not None else [], dtype=float)
    out: dict[str, list[int]] = {}
    for i, name in enumerate(classes):
        if name not in out:
            if faces.ndim == 2 and i < len(faces):
                out[name] = [round(v * 255) for v in faces[i][:3]]
            else:
                out[name] = PALETTE[(len(out) + 1) % len(PALETTE)]
    return out


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None

