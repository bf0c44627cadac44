"""GeoJSON for QuPath: segmentation objects as annotations, detections as detection objects, written as they come.

QuPath reads a ``FeatureCollection`` whose features carry ``objectType`` ("annotation" / "detection"),
``classification`` ``{"name", "color": [r, g, b]}`` and ``measurements`` (a name -> number map), with coordinates
in level-0 pixels of the slide, origin at the top-left *corner* of the first pixel. napari and the result store put
pixel *centres* on integer coordinates, so detection positions move by +0.5 px here; label polygons are traced on
pixel corners directly (see :mod:`._polygons`).

A store made from a georeferenced image (a drone orthomosaic, a SAR scene) is written in map coordinates instead:
RFC 7946 GeoJSON, WGS 84 longitude/latitude (what every GIS and web map reads without being told the CRS), rings
oriented after the reprojection. ``coords="pixel"`` keeps image pixels for QuPath; ``"map"`` insists on the map.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.polygon import orient

from ._common import (
    ExportError,
    check_complete,
    check_out,
    detection_classes,
    detection_shape,
    open_store,
    pixel_size,
    provenance,
    segmentation_classes,
    written_aside,
)
from ._geo import clip_to_image, require_georef, resolve_coords, to_wgs84
from ._polygons import iter_objects


def export_geojson(store, out, *, level: int = 0, simplify: float = 1.0, detections_as: str = "auto",
                   include_segmentation: bool = True, include_detections: bool = True, overwrite: bool = False,
                   partial: bool = False, tile: int = 1024, counts: dict | None = None, coords: str = "auto") -> Path:
    """Write the store's objects as a QuPath-importable GeoJSON FeatureCollection; returns ``out``.

    ``coords``: ``auto`` (WGS 84 lon/lat for a georeferenced image, level-0 px otherwise), ``pixel`` or ``map``.

    ``level``: the store pyramid level traced (coarser is faster, coordinates stay level-0 px). ``simplify``:
    Douglas-Peucker tolerance in level-0 px (0 keeps every corner). ``tile``: traced block side in level px (memory
    grows with its square, not with the image). ``counts``, when given, receives how many features were written.
    """
    store = open_store(store)
    detections_as = detection_shape(store, detections_as)
    if not simplify >= 0:
        raise ExportError(f"simplify must be a tolerance >= 0 (level-0 px), not {simplify!r}.")
    if not (include_segmentation or include_detections):
        raise ExportError("nothing to export: both include_segmentation and include_detections are off.")
    if include_segmentation and store.labels and not 0 <= level < len(store.labels):
        raise ExportError(f"store {store.path} has label levels 0..{len(store.labels) - 1}, not level {level}.")
    mapper = to_wgs84(require_georef(store, "GeoJSON")) if resolve_coords(store, coords) == "map" else None
    is_partial = check_complete(store, partial)
    out = check_out(out, overwrite, "GeoJSON output")
    scale = float(store.spec.downsample_to_level0) * 2**level
    size = pixel_size(store)
    header = {
        **provenance(store, is_partial),
        "coordinates": ("WGS 84 longitude, latitude (RFC 7946)" if mapper else
                        "level-0 image pixels, origin at the top-left corner of pixel (0, 0)"),
        "traced_level": level,
        "level0_px_per_traced_px": scale,
        "simplify_px": float(simplify),
    }
    if size:
        header["pixel_size"] = {"y": size[0][0], "x": size[0][1], "unit": size[1]}
    tally = {"annotations": 0, "detections": 0}
    features: list[Iterable[str]] = []
    if include_segmentation and store.labels:
        features.append(_segmentation_features(store, level, scale, simplify, size, tile, tally, mapper))
    if include_detections:
        features.append(_detection_features(store, detections_as, tally, mapper))
    with written_aside(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "napari_xt": ' + json.dumps(header) + ', "features": [\n')
        sep = ""
        for stream in features:
            for text in stream:
                fh.write(sep + text)
                sep = ",\n"
        fh.write("\n]}\n")
    if counts is not None:
        counts.update(tally)
    return out


def feature(geometry: str, properties: dict) -> str:
    """One GeoJSON feature as text (``geometry`` already GeoJSON text, e.g. from ``shapely.to_geojson``)."""
    return '{"type": "Feature", "geometry": ' + geometry + ', "properties": ' + json.dumps(properties) + "}"


def classification(name: str, rgb) -> dict:
    return {"name": str(name), "color": [int(v) for v in list(rgb)[:3]]}


def _segmentation_features(store, level, scale, simplify, size, tile, tally, mapper=None) -> Iterator[str]:
    names, colors = segmentation_classes(store)
    tolerance = float(simplify) / scale  # level-0 px -> traced px
    area_key = f"area_{size[2]}2" if size else None
    per_px2 = size[0][0] * size[0][1] if size else None
    for cls, geom in iter_objects(store.labels[level], tile=tile, skip=(0,)):
        geom = shapely.simplify(geom, tolerance, preserve_topology=True)
        if geom.is_empty:
            continue
        geom = shapely.transform(geom, lambda c: np.round(c * scale, 3))
        if mapper is not None:  # on a map, nothing sticks out of the scene (the analysis grid rounds up)
            geom = clip_to_image(store, geom)
            if geom.is_empty:
                continue
        area = float(geom.area)
        if mapper is not None:  # orient after reprojecting: north-up lon/lat flips the rings of y-down pixels
            geom = shapely.transform(geom, lambda c: np.round(mapper(c), 8))
        geom = _oriented(geom)
        name = names[cls] if cls < len(names) else f"class {cls}"
        rgb = colors[cls] if cls < len(colors) else [128, 128, 128]
        measurements = {"area_px2": round(area, 3)}
        if area_key and per_px2 is not None:
            measurements[area_key] = area * per_px2
        tally["annotations"] += 1
        yield feature(shapely.to_geojson(geom), {
            "objectType": "annotation", "name": name, "classification": classification(name, rgb),
            "isLocked": False, "measurements": measurements, "class_id": int(cls),
        })


def _detection_features(store, detections_as, tally, mapper=None) -> Iterator[str]:
    det = store.detections()
    n = len(det["y"])
    if n == 0:
        return
    names, colors = detection_classes(store, int(det["cls"].max()) + 1)
    x, y = det["x"].astype(np.float64) + 0.5, det["y"].astype(np.float64) + 0.5  # centres -> corner origin
    w, h = det["w"].astype(np.float64), det["h"].astype(np.float64)
    digits = 3 if mapper is None else 8  # 1/1000 px, or ~1 mm in degrees
    mapped = mapper(np.stack([x, y], axis=1)) if mapper is not None else None
    for i in range(n):
        cls = int(det["cls"][i])
        if detections_as == "points":
            px, py = (x[i], y[i]) if mapped is None else mapped[i]
            geometry = f'{{"type": "Point", "coordinates": [{px:.{digits}f}, {py:.{digits}f}]}}'
        else:
            x0, y0, x1, y1 = x[i] - w[i] / 2, y[i] - h[i] / 2, x[i] + w[i] / 2, y[i] + h[i] / 2
            ring = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
            if mapper is not None:
                ring = mapper(ring)[::-1]  # north-up lon/lat runs the other way: reversed, counter-clockwise again
            geometry = json.dumps({"type": "Polygon", "coordinates": [[[round(float(a), digits),
                                                                        round(float(b), digits)] for a, b in ring]]})
        tally["detections"] += 1
        yield feature(geometry, {
            "objectType": "detection", "classification": classification(names[cls], colors[cls]),
            "isLocked": False, "class_id": cls, "region_id": int(det["region_id"][i]),
            "measurements": {"score": round(float(det["score"][i]), 6), "width_px": round(float(w[i]), 3),
                             "height_px": round(float(h[i]), 3)},
        })


def _oriented(geom):
    """Exterior rings counter-clockwise, holes clockwise (RFC 7946's right-hand rule)."""
    if isinstance(geom, Polygon):
        return orient(geom, 1.0)
    if isinstance(geom, MultiPolygon):
        return MultiPolygon([orient(p, 1.0) for p in geom.geoms])
    return geom
