"""Where a store's pixels lie on the map, for the exporters that put results back into a GIS.

A result store made from a georeferenced image keeps that image's CRS and level-0 transform (``image_georef`` in
its metadata). Store pixel ``(i, j)`` of label level ``L`` covers level-0 pixels ``[i f, (i + 1) f]`` with ``f`` the
store's level-0 px per analysis px times the level's size ratio, so its transform is the image's scaled by ``f``.
Every exporter maps level-0 pixel-corner coordinates (QuPath's convention, what the tracers produce) through one
function from here: to the image CRS (GeoPackage, GeoTIFF) or to WGS 84 lon/lat (GeoJSON, RFC 7946).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..io._geo import Georef, pyproj_crs, require
from ._common import ExportError

COORDS = ("auto", "pixel", "map")

Mapper = Callable[[np.ndarray], np.ndarray]  # (N, 2) level-0 px corner (x, y) -> (N, 2) output (x, y)


def store_georef(store) -> Georef | None:
    """The georef of the store's *image* (level 0), or None for a slide / an image without one."""
    return Georef.from_dict(store.meta.get("image_georef"))


def require_georef(store, what: str) -> Georef:
    """The image georef, or an :class:`ExportError` saying ``what`` needs a georeferenced image."""
    georef = store_georef(store)
    if georef is None:
        raise ExportError(f"{what} needs map coordinates, but store {store.path} was made from an image without a "
                          "CRS (a slide or a plain TIFF); export ome-zarr or geojson (pixel coordinates) instead.")
    return georef


def label_georef(store, level: int = 0) -> Georef:
    """The georef of the store's label level ``level``: an analysis pixel is ``downsample_to_level0`` level-0 px a
    side (what the reader resampled), a level-``L`` pixel ``2**L`` analysis px (the pyramid is strided)."""
    f = float(store.spec.downsample_to_level0) * 2**level
    return require_georef(store, "a georeferenced export").scaled(f, f)


def clip_to_image(store, geom):
    """``geom`` (level-0 px) cut to the image: the analysis grid rounds up, so its last row and column may reach a
    fraction of a pixel past the edge, and a map feature must not stick out of the scene it describes."""
    import shapely

    shape = store.meta.get("image_shape") or []
    if len(shape) < 2:
        return geom
    return shapely.clip_by_rect(geom, 0.0, 0.0, float(shape[1]), float(shape[0]))


def resolve_coords(store, coords: str) -> str:
    """``pixel`` or ``map`` for ``coords`` (``auto``: map when the store's image is georeferenced)."""
    if coords not in COORDS:
        raise ExportError(f"coords must be one of {', '.join(COORDS)}, not {coords!r}.")
    if coords == "auto":
        return "map" if store_georef(store) is not None else "pixel"
    if coords == "map":
        require_georef(store, "--coords map")
    return coords


def to_image_crs(georef: Georef) -> Mapper:
    """Level-0 px corner (x, y) -> the image CRS (affine only: no library needed)."""

    def mapper(xy: np.ndarray) -> np.ndarray:
        X, Y = georef.to_map(xy[:, 0], xy[:, 1])
        return np.stack([X, Y], axis=1)

    return mapper


def to_wgs84(georef: Georef) -> Mapper:
    """Level-0 px corner (x, y) -> WGS 84 longitude, latitude (RFC 7946), through pyproj."""
    pyproj = require("pyproj", "GeoJSON in map coordinates (RFC 7946 lon/lat)")
    transformer = pyproj.Transformer.from_crs(pyproj_crs(georef), "EPSG:4326", always_xy=True)

    def mapper(xy: np.ndarray) -> np.ndarray:
        X, Y = georef.to_map(xy[:, 0], xy[:, 1])
        lon, lat = transformer.transform(X, Y)
        return np.stack([np.asarray(lon, float), np.asarray(lat, float)], axis=1)

    return mapper


def area_m2(georef: Georef) -> Callable[[object], float]:
    """Area in m² of a shapely geometry given in the image CRS: planar for a projected CRS, geodesic for degrees."""
    if not georef.geographic:
        factor = georef.unit_m**2
        return lambda geom: float(geom.area) * factor  # type: ignore[attr-defined]
    geod = pyproj_crs(georef).get_geod() or require("pyproj", "areas in metres").Geod(ellps="WGS84")
    return lambda geom: abs(float(geod.geometry_area_perimeter(geom)[0]))
