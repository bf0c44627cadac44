"""Annotations drawn in a GIS (QGIS, ArcGIS, geopandas): points and polygons in map coordinates, onto image pixels.

An ecologist marks trees on a drone orthomosaic in QGIS and saves a GeoPackage, a Shapefile or a GeoJSON; its
coordinates are metres in some UTM zone or degrees, never pixels. :func:`read_gis` reads every point and polygon
layer with pyogrio, reprojects them into the image's CRS (pyproj) and through the image's affine transform into
level-0 pixel-corner coordinates (x, y), the convention QuPath GeoJSON and :class:`PolygonLabels` use. What cannot
be used is counted, never dropped silently: features outside the image, features whose coordinates the CRSs cannot
carry (e.g. a polar point into a UTM zone), empty or line geometries.

Which GeoJSON is a GIS file: one that names a CRS (GDAL and QGIS write a ``crs`` member), our own RFC 7946 export,
or one whose coordinates only make sense as longitude/latitude over a georeferenced image. A QuPath GeoJSON (pixel
coordinates, no CRS) keeps going through :mod:`napari_xt.train.annotations`. Torch-free, so the dock can load such
files as layers; :mod:`napari_xt.train.gis_vectors` turns them into training annotations.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import XTError
from ._geo import pyproj_crs, require


class GisReadError(XTError):
    """A GIS annotation file that cannot be placed on the image; the message names the file and says why."""

#: files that are always map data (GeoJSON only when it says so, see :func:`is_gis_file`)
GIS_SUFFIXES = (".gpkg", ".shp", ".fgb", ".gml", ".kml", ".sqlite")
CLASS_FIELDS = ("class", "classification", "label", "category", "species", "type", "name")
_WGS84 = "OGC:CRS84"  # lon/lat order, what RFC 7946 GeoJSON means


@dataclass
class GisVectors:
    """Features of a GIS file in level-0 pixel-corner coordinates of one image, with what was left out and why."""

    path: Path
    geometries: list[Any]  # shapely, (x, y) level-0 px
    classes: list[str]
    crs_name: str = ""
    skipped: dict[str, int] = field(default_factory=dict)

    def describe_skipped(self) -> str:
        """'' or 'left out 3 of 40 features: 2 outside the image, 1 that cannot be transformed ...'."""
        n = sum(self.skipped.values())
        if not n:
            return ""
        parts = ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items()))
        return f"left out {n} of {n + len(self.geometries)} features: {parts}"

def is_gis_file(path: str | Path, image=None) -> bool:
    """Whether ``path`` holds map coordinates (see the module docstring), so it must be reprojected onto ``image``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in GIS_SUFFIXES:
        return True
    if suffix not in (".geojson", ".json") or not p.is_file():
        return False
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # the QuPath reader says what is wrong with it
    if not isinstance(doc, dict):
        return False
    if doc.get("crs") or "RFC 7946" in str((doc.get("napari_xt") or {}).get("coordinates", "")):
        return True
    georef = getattr(image, "georef", None)
    return georef is not None and _lonlat_over(doc, image)


def _lonlat_over(doc: dict, image) -> bool:
    """A CRS-less GeoJSON over a georeferenced image: lon/lat (RFC 7946) when its coordinates do not fit the image
    as pixels but do fall on it as longitude/latitude."""
    pts = []
    for f in doc.get("features") or []:
        coords = ((f or {}).get("geometry") or {}).get("coordinates")
        flat = np.asarray(_first_xy(coords), float) if coords is not None else np.empty((0, 2))
        if flat.size:
            pts.append(flat)
        if len(pts) >= 200:
            break
    if not pts:
        return False
    xy = np.concatenate(pts)
    if not (np.abs(xy[:, 0]) <= 180).all() or not (np.abs(xy[:, 1]) <= 90).all():
        return False
    h, w = image.levels[0].shape[:2]
    as_pixels = ((xy[:, 0] >= 0) & (xy[:, 0] <= w) & (xy[:, 1] >= 0) & (xy[:, 1] <= h)).mean()
    try:
        x, y = _projector(_WGS84, image.georef)(xy)
    except Exception:
        return False
    as_lonlat = ((x >= 0) & (x <= w) & (y >= 0) & (y <= h)).mean()
    return bool(as_lonlat > 0.5 and as_lonlat > as_pixels)


def _first_xy(coords) -> list:
    """The (x, y) pairs of a GeoJSON coordinate tree (any nesting), flattened."""
    if isinstance(coords, (list, tuple)) and coords and isinstance(coords[0], (int, float)):
        return [list(coords[:2])]
    out: list = []
    for c in coords or []:
        out.extend(_first_xy(c))
    return out


def read_gis(path: str | Path, image, class_field: str | None = None) -> GisVectors:
    """Point and polygon features of every layer of ``path``, in ``image``'s level-0 px (see :class:`GisVectors`)."""
    import shapely

    path = Path(path)
    georef = getattr(image, "georef", None)
    if georef is None:
        raise GisReadError(f"{path} holds map coordinates, but the image {getattr(image, 'path', '')} has no CRS "
                              "to place them on (a slide or a plain TIFF); give annotations in pixels (CSV, QuPath "
                              "GeoJSON) instead")
    pyogrio = require("pyogrio", f"reading GIS annotations ({path.suffix})")
    if not path.exists():
        raise GisReadError(f"{path}: no such file")
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as err:
        raise GisReadError(f"{path}: not a vector file GDAL can read ({err})") from None
    h, w = image.levels[0].shape[:2]
    frame = shapely.box(0, 0, w, h)
    out = GisVectors(path, [], [], crs_name=georef.label)
    for layer in layers:
        meta, _, wkb, values = pyogrio.raw.read(path, layer=layer)
        if wkb is None or not len(wkb):
            continue
        fields = [str(f) for f in meta["fields"]]
        key = class_field if class_field in fields else next((f for f in fields if f.lower() in CLASS_FIELDS), None)
        names = [_class_name(v) for v in values[fields.index(key)]] if key else ["object"] * len(wkb)
        geoms = shapely.from_wkb(wkb)
        src_crs = meta.get("crs") or (_WGS84 if path.suffix.lower() in (".geojson", ".json") else None)
        if src_crs is None:
            raise GisReadError(f"{path}: layer {layer!r} has no CRS, so its coordinates cannot be placed on the "
                                  "image; set one in the GIS (QGIS: Layer > Set CRS) and save again")
        project = _projector(src_crs, georef)
        for geom, name in zip(geoms, names, strict=True):
            _add(out, geom, name, project, georef, frame)
    if not out.geometries:
        raise GisReadError(f"{path}: none of its features lie on the image ({georef.label})"
                              + (f"; {out.describe_skipped()}" if out.skipped else ""))
    return out


def _add(out: GisVectors, geom, name: str, project, georef, frame) -> None:
    import shapely

    def skip(why: str) -> None:
        out.skipped[why] = out.skipped.get(why, 0) + 1

    if geom is None or geom.is_empty:
        return skip("empty geometries")
    if geom.geom_type not in ("Point", "MultiPoint", "Polygon", "MultiPolygon"):
        return skip(f"{geom.geom_type} features (only points and polygons are annotations)")
    px = shapely.transform(geom, lambda c: np.stack(project(c), axis=1))
    if not np.isfinite(shapely.get_coordinates(px)).all():
        return skip(f"that cannot be transformed to {georef.label}")
    if not px.intersects(frame):
        return skip("outside the image")
    out.geometries.append(px)
    out.classes.append(name)


def _projector(src_crs: str, georef):
    """(N, 2) map (x, y) in ``src_crs`` -> the image's level-0 px corner (x, y) arrays (inf where the CRSs cannot
    carry a point); one pyproj transformer per layer, not per feature."""
    pyproj = require("pyproj", "reprojecting GIS annotations")
    dst = pyproj_crs(georef)
    src = pyproj.CRS.from_user_input(src_crs)
    transformer = None if src.equals(dst) else pyproj.Transformer.from_crs(src, dst, always_xy=True)

    def project(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, Y = np.asarray(xy[:, 0], float), np.asarray(xy[:, 1], float)
        if transformer is not None:
            X, Y = transformer.transform(X, Y, errcheck=False)
        return georef.to_pixel(np.asarray(X, float), np.asarray(Y, float))

    return project


def _class_name(value) -> str:
    """A class from a field value; QuPath-style ``{"name": ...}`` objects (as JSON text) give their name."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "object"
    text = str(value).strip()
    if text.startswith("{"):
        try:
            return str(json.loads(text).get("name") or "object")
        except (ValueError, AttributeError):
            pass
    return text or "object"
