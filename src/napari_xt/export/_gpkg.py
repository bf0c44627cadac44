"""Detections and label polygons as a GeoPackage in the image's CRS: what QGIS, ArcGIS and geopandas open as layers.

GeoPackage is the GIS format that holds several layers with typed fields in one file, so each kind of result is its
own layer: ``detections`` (points at the box centres, or the boxes as polygons) and ``segmentation`` (one polygon per
connected object per class, traced as for GeoJSON). Fields: ``class`` (name), ``class_id``, ``score`` (detections),
``area_m2`` (geodesic on an image in degrees) and ``area_px`` (level-0 px²). Coordinates stay in the image's own CRS
(no reprojection, so they overlay the source exactly); pyogrio writes them through GDAL in batches, so memory holds
one batch of features, not the image's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import shapely

from ..io._geo import require
from ._common import (
    ExportError,
    check_complete,
    check_out,
    detection_classes,
    detection_shape,
    open_store,
    segmentation_classes,
    written_aside,
)
from ._geo import area_m2, clip_to_image, require_georef, to_image_crs
from ._polygons import iter_objects

BATCH = 5000


def export_gpkg(store, out, *, level: int = 0, simplify: float = 1.0, detections_as: str = "auto",
                include_segmentation: bool = True, include_detections: bool = True, overwrite: bool = False,
                partial: bool = False, tile: int = 1024, counts: dict | None = None) -> Path:
    """Write ``detections`` and ``segmentation`` layers (those the store has) to a GeoPackage; returns ``out``.

    ``level``, ``simplify`` (level-0 px) and ``tile`` trace the label polygons as :func:`export_geojson` does.
    ``counts``, when given, receives the number of features per layer.
    """
    store = open_store(store)
    georef = require_georef(store, "a GeoPackage")
    detections_as = detection_shape(store, detections_as)
    if not simplify >= 0:
        raise ExportError(f"simplify must be a tolerance >= 0 (level-0 px), not {simplify!r}.")
    if include_segmentation and store.labels and not 0 <= level < len(store.labels):
        raise ExportError(f"store {store.path} has label levels 0..{len(store.labels) - 1}, not level {level}.")
    raw = require("pyogrio.raw", "writing a GeoPackage")
    check_complete(store, partial)
    out = check_out(out, overwrite, "GeoPackage output")
    if out.suffix.lower() != ".gpkg":
        raise ExportError(f"GeoPackage output {out} must end in .gpkg (GIS tools pick the format by its suffix).")
    crs = georef.crs or f"EPSG:{georef.epsg}"
    to_map, area = to_image_crs(georef), area_m2(georef)
    tally = {"detections": 0, "segmentation": 0}
    # GDAL wants the .gpkg name while writing: a hidden folder beside ``out`` holds it until it is complete
    with tempfile.TemporaryDirectory(prefix=".napari-xt-gpkg-", dir=out.parent) as folder:
        tmp = Path(folder) / out.name
        layers = []
        if include_detections:
            kind = "Point" if detections_as == "points" else "Polygon"
            layers.append(("detections", kind, _detections(store, detections_as, to_map, area)))
        if include_segmentation and store.labels:
            # a traced object is rarely a MultiPolygon (pieces touching at a corner): one layer type holds both
            layers.append(("segmentation", "MultiPolygon", _segments(store, level, simplify, tile, to_map, area)))
        for name, kind, batches in layers:
            first = True
            for fields, geoms in batches:
                raw.write(str(tmp), shapely.to_wkb(geoms), list(fields.values()), list(fields), layer=name,
                          driver="GPKG", geometry_type=kind, crs=crs, append=not first,
                          promote_to_multi=kind == "MultiPolygon")
                first = False
                tally[name] += len(geoms)
        if not any(tally.values()):
            raise ExportError(f"store {store.path} has nothing to export: no detections and no labelled objects.")
        with written_aside(out) as final:
            os.replace(tmp, final)
    if counts is not None:
        counts.update(tally)
    return out


def _detections(store, detections_as, to_map, area) -> Iterator[tuple[dict, np.ndarray]]:
    det = store.detections()
    n = len(det["y"])
    if n == 0:
        return
    names, _ = detection_classes(store, int(det["cls"].max()) + 1)
    x, y = det["x"].astype(np.float64) + 0.5, det["y"].astype(np.float64) + 0.5  # store centres -> corner origin
    w, h = det["w"].astype(np.float64), det["h"].astype(np.float64)
    for s in range(0, n, BATCH):
        sl = slice(s, min(s + BATCH, n))
        if detections_as == "points":
            xy = to_map(np.stack([x[sl], y[sl]], axis=1))
            geoms = shapely.points(xy)
        else:
            x0, y0, x1, y1 = x[sl] - w[sl] / 2, y[sl] - h[sl] / 2, x[sl] + w[sl] / 2, y[sl] + h[sl] / 2
            corners = np.stack([np.stack(p, axis=1) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], axis=1)
            mapped = to_map(corners.reshape(-1, 2)).reshape(-1, 4, 2)
            geoms = shapely.polygons(mapped)
        cls = det["cls"][sl].astype(np.int32)
        fields = {"class": np.array([names[c] for c in cls], dtype=object), "class_id": cls,
                  "score": det["score"][sl].astype(np.float32), "region_id": det["region_id"][sl].astype(np.int32),
                  "width_px": w[sl].astype(np.float32), "height_px": h[sl].astype(np.float32)}
        if detections_as == "boxes":
            fields["area_m2"] = np.array([area(g) for g in geoms], dtype=np.float64)
        yield fields, geoms


def _segments(store, level, simplify, tile, to_map, area) -> Iterator[tuple[dict, np.ndarray]]:
    names, _ = segmentation_classes(store)
    scale = float(store.spec.downsample_to_level0) * 2**level
    tolerance = float(simplify) / scale
    geoms: list = []
    cls_ids: list[int] = []
    px: list[float] = []

    def flush():
        arr = np.array(geoms, dtype=object)
        ids = np.array(cls_ids, dtype=np.int32)
        fields = {"class": np.array([names[c] if c < len(names) else f"class {c}" for c in ids], dtype=object),
                  "class_id": ids, "area_m2": np.array([area(g) for g in arr], dtype=np.float64),
                  "area_px": np.array(px, dtype=np.float64)}
        geoms.clear()
        cls_ids.clear()
        px.clear()
        return fields, arr

    for cls, geom in iter_objects(store.labels[level], tile=tile, skip=(0,)):
        geom = shapely.simplify(geom, tolerance, preserve_topology=True)
        if geom.is_empty:
            continue
        level0 = clip_to_image(store, shapely.transform(geom, lambda c: c * scale))
        if level0.is_empty:
            continue
        geoms.append(shapely.transform(level0, to_map))
        cls_ids.append(int(cls))
        px.append(float(level0.area))
        if len(geoms) >= BATCH:
            yield flush()
    if geoms:
        yield flush()
