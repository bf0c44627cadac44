"""Georeferencing: where an image's pixels lie on the Earth (CRS + affine transform), read without the GIS stack.

A drone orthomosaic or a SAR scene is only useful to its owner if results go back onto the map, so every image
that says where it is keeps it as a :class:`Georef` (level 0; coarser levels derive it from their shape). The
transform is parsed from the GeoTIFF tags here (no dependency: tifffile hands us the keys), because reading a
slide must never need a GIS library. What does need one is imported lazily through :func:`require`, which turns
a missing package into one sentence naming ``pip install 'napari-xt[geo]'``: CRS names and WKT (pyproj), degrees
to metres (pyproj's geodesic), a CRS defined inline in the file (rasterio/GDAL), reprojection of vectors.

Conventions: ``transform`` is ``(a, b, c, d, e, f)`` in rasterio/affine order, mapping pixel *corner* coordinates
(column ``x``, row ``y``; pixel (i, j) covers ``x`` in [j, j + 1]) to map coordinates: ``X = a x + b y + c``,
``Y = d x + e y + f``. Map axes are GIS order (easting/longitude first), as GDAL and GeoTIFF have them.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import GeoDependencyMissing, ImageError

#: GeoTIFF ProjLinearUnitsGeoKey codes -> metres per unit (metre, foot, US survey foot)
_LINEAR_UNITS = {9001: 1.0, 9002: 0.3048, 9003: 1200 / 3937}
_USER_DEFINED = 32767


def require(module: str, what: str) -> Any:
    """``import module`` or a :class:`GeoDependencyMissing` saying ``what`` needs the ``geo`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GeoDependencyMissing(what, module) from None


@dataclass(frozen=True)
class Georef:
    """CRS and level-0 affine transform of an image (see the module docstring for the conventions).

    ``crs`` is WKT when a GIS library could give it, else ``EPSG:n``; ``""`` when the file defines its own CRS and
    nothing here can read it (the transform is still right, map coordinates cannot be named). ``geographic``:
    map units are degrees. ``unit_m``: metres per map unit of a projected CRS (1 for metres, 0.3048 for feet).
    """

    crs: str
    transform: tuple[float, float, float, float, float, float]
    epsg: int | None = None
    name: str = ""
    geographic: bool = False
    unit_m: float = 1.0

    # -- naming ----------------------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """What a person reads: ``EPSG:32631 (WGS 84 / UTM zone 31N)``."""
        code = f"EPSG:{self.epsg}" if self.epsg else ("custom CRS" if self.crs else "unknown CRS")
        return f"{code} ({self.name})" if self.name else code

    def to_dict(self) -> dict[str, Any]:
        """JSON for the result store (``image_georef``) and exports."""
        return {"crs": self.crs, "epsg": self.epsg, "name": self.name, "transform": [float(v) for v in self.transform],
                "geographic": self.geographic, "unit_m": self.unit_m}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Georef | None:
        if not d or not d.get("transform"):
            return None
        t = [float(v) for v in d["transform"]][:6]
        return cls(str(d.get("crs") or ""), (t[0], t[1], t[2], t[3], t[4], t[5]), d.get("epsg"),
                   str(d.get("name") or ""), bool(d.get("geographic")), float(d.get("unit_m") or 1.0))

    # -- geometry --------------------------------------------------------------------------------------------------
    def scaled(self, fy: float, fx: float) -> Georef:
        """The georef of a grid whose pixels are ``fy`` x ``fx`` level-0 pixels (a pyramid level, an analysis grid)."""
        a, b, c, d, e, f = self.transform
        return Georef(self.crs, (a * fx, b * fy, c, d * fx, e * fy, f), self.epsg, self.name, self.geographic,
                      self.unit_m)

    def to_map(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-corner coordinates (column, row) -> map coordinates (X, Y)."""
        a, b, c, d, e, f = self.transform
        x, y = np.asarray(x, float), np.asarray(y, float)
        return a * x + b * y + c, d * x + e * y + f

    def to_pixel(self, X, Y) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates -> pixel-corner coordinates (column, row); the inverse of :meth:`to_map`."""
        a, b, c, d, e, f = self.transform
        det = a * e - b * d
        X, Y = np.asarray(X, float) - c, np.asarray(Y, float) - f
        with np.errstate(invalid="ignore"):  # inf from an untransformable point stays non-finite, quietly
            return (e * X - b * Y) / det, (-d * X + a * Y) / det

    def pixel_size(self) -> tuple[float, float]:
        """(y, x) size of a pixel in map units (lengths of the transform's columns)."""
        a, b, _, d, e, _ = self.transform
        return math.hypot(b, e), math.hypot(a, d)

    def metres_per_pixel(self, shape: tuple[int, int]) -> tuple[float, float]:
        """(y, x) metres per pixel at the centre of an image of ``shape`` px: geodesic for degrees (pyproj)."""
        if not self.geographic:
            sy, sx = self.pixel_size()
            return sy * self.unit_m, sx * self.unit_m
        pyproj = require("pyproj", "converting a pixel size in degrees to metres")
        geod = _crs(self).get_geod() or pyproj.Geod(ellps="WGS84")
        cy, cx = shape[0] / 2, shape[1] / 2
        lon, lat = self.to_map([cx, cx + 1, cx], [cy, cy, cy + 1])
        _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, dy = geod.inv(lon[0], lat[0], lon[2], lat[2])
        return float(dy), float(dx)

    def footprint(self, shape: tuple[int, int]) -> np.ndarray:
        """The image outline in map coordinates: 5 (X, Y) corners, closed."""
        h, w = shape
        X, Y = self.to_map([0, w, w, 0, 0], [0, 0, h, h, 0])
        return np.stack([X, Y], axis=1)


def _crs(georef: Georef):
    """The pyproj CRS of ``georef`` (pyproj required)."""
    pyproj = require("pyproj", "working with map coordinates")
    if not georef.crs:
        raise GeoDependencyMissing("this image's CRS (defined inside the file, not by an EPSG code)", "rasterio")
    return pyproj.CRS.from_user_input(georef.crs)


def pyproj_crs(georef: Georef):
    """Public form of :func:`_crs` for the exporters and the vector reader."""
    return _crs(georef)


# -- GeoTIFF ---------------------------------------------------------------------------------------------------------
def transform_from_tags(keys: dict[str, Any]) -> tuple[float, float, float, float, float, float] | None:
    """The affine transform GDAL would report, from ModelTransformation or ModelTiepoint + ModelPixelScale.

    A raster of type PixelIsPoint has its tie point on a pixel *centre*; GDAL (and so QGIS) shifts it by half a pixel
    to the corner, and so do we, or results land half a pixel off the imagery.
    """
    matrix = None if keys.get("ModelTransformation") is None else np.asarray(keys["ModelTransformation"], float)
    if matrix is not None and matrix.size >= 8:
        m = [float(v) for v in matrix.ravel()]
        t = (m[0], m[1], m[3], m[4], m[5], m[7])
    else:
        scale, tie = keys.get("ModelPixelScale"), keys.get("ModelTiepoint")
        if scale is None or tie is None or len(scale) < 2 or len(tie) < 6:
            return None
        sx, sy = float(scale[0]), float(scale[1])
        i, j, X, Y = float(tie[0]), float(tie[1]), float(tie[3]), float(tie[4])
        t = (sx, 0.0, X - i * sx, 0.0, -sy, Y + j * sy)
    if _code(keys.get("GTRasterTypeGeoKey")) == 2:  # PixelIsPoint
        a, b, c, d, e, f = t
        t = (a, b, c - 0.5 * a - 0.5 * b, d, e, f - 0.5 * d - 0.5 * e)
    if t[0] * t[4] - t[1] * t[3] == 0:
        return None
    return t


def georef_from_geotiff(path: str, keys: dict[str, Any]) -> Georef | None:
    """The georef of a GeoTIFF from tifffile's ``geotiff_metadata``; None when it holds no usable transform.

    The CRS comes from the EPSG code in the keys (WKT and name through pyproj when installed); a CRS written out
    inline (user-defined keys) needs GDAL, so rasterio reads it when installed.
    """
    transform = transform_from_tags(keys)
    if transform is None:
        return None
    model = _code(keys.get("GTModelTypeGeoKey"))
    geographic = model == 2
    epsg = _code(keys.get("GeographicTypeGeoKey" if geographic else "ProjectedCSTypeGeoKey"))
    epsg = epsg if epsg and epsg != _USER_DEFINED else None
    unit_m = _LINEAR_UNITS.get(_code(keys.get("ProjLinearUnitsGeoKey")) or 9001, 1.0)
    name = str(keys.get("GTCitationGeoKey") or keys.get("GeogCitationGeoKey") or "").strip()
    crs = f"EPSG:{epsg}" if epsg else ""
    try:
        pyproj = importlib.import_module("pyproj")
    except ImportError:
        pyproj = None
    if not epsg:
        crs = _crs_via_rasterio(path)
        if crs and pyproj is not None:
            epsg = pyproj.CRS.from_wkt(crs).to_epsg()
    if crs and pyproj is not None:
        c = pyproj.CRS.from_user_input(crs)
        crs, name, geographic = c.to_wkt(), c.name, c.is_geographic
        if not geographic and c.axis_info:
            unit_m = float(c.axis_info[0].unit_conversion_factor or 1.0)
    return Georef(crs, transform, epsg, name, geographic, unit_m)


def _crs_via_rasterio(path: str) -> str:
    """WKT of a file's inline CRS through GDAL; "" when rasterio is not installed or GDAL cannot say."""
    try:
        rasterio = importlib.import_module("rasterio")
    except ImportError:
        return ""
    try:
        with rasterio.open(path) as ds:
            return ds.crs.to_wkt() if ds.crs else ""
    except Exception:  # GDAL refusing a file tifffile reads: the transform stays, the CRS is unknown
        return ""


def _code(value: Any) -> int | None:
    if value is None:
        return None
    value = getattr(value, "value", value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# -- zarr (GeoZarr "proj:" / "spatial:" conventions) -----------------------------------------------------------------
def georef_from_attrs(attrs: dict[str, Any]) -> Georef | None:
    """The georef written by the GeoZarr conventions (``proj:code``/``proj:wkt2`` + ``spatial:transform``).

    Looked up in the attributes given (an OME-Zarr group's, or its ``ome`` member); None without both a CRS and
    a transform, because a CRS alone cannot place pixels.
    """
    crs = attrs.get("proj:wkt2") or attrs.get("proj:code") or attrs.get("crs")
    if not crs and attrs.get("proj:epsg"):
        crs = f"EPSG:{int(attrs['proj:epsg'])}"
    t = attrs.get("spatial:transform") or attrs.get("proj:transform")
    if not crs or not t or len(t) < 6:
        return None
    tt = [float(v) for v in t][:6]
    transform = (tt[0], tt[1], tt[2], tt[3], tt[4], tt[5])
    epsg = None
    text = str(crs)
    if text.upper().startswith("EPSG:"):
        epsg = int(text.split(":", 1)[1])
    try:
        pyproj = importlib.import_module("pyproj")
    except ImportError:
        geographic = epsg == 4326
        return Georef(text, transform, epsg, "", geographic)
    c = pyproj.CRS.from_user_input(text)
    unit = float(c.axis_info[0].unit_conversion_factor or 1.0) if (c.axis_info and not c.is_geographic) else 1.0
    return Georef(c.to_wkt(), transform, epsg or c.to_epsg(), c.name, c.is_geographic, unit)


def metric_pixel_size(image) -> tuple[tuple[float, float], str] | None:
    """``((y, x), unit)`` of a level-0 pixel with degrees turned into metres at the scene centre; None if unknown.

    The one place the plan and the trainer get a pixel size they may compare with a model's (``um`` or ``m``).
    """
    if not image.pixel_size:
        return None
    if image.pixel_unit != "deg":
        return (float(image.pixel_size[0]), float(image.pixel_size[1])), str(image.pixel_unit or "um")
    georef = getattr(image, "georef", None)
    if georef is None:
        raise ImageError("the pixel size is in degrees, but the image has no transform to turn it into metres",
                         str(getattr(image, "path", "")))
    return georef.metres_per_pixel(tuple(image.levels[0].shape[:2])), "m"
