"""Small georeferenced files written by the tests themselves with the GIS stack users have (rasterio, pyogrio), plus
the maps between pixels and map coordinates the checks need (importable by name: tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio.raw
import rasterio
import shapely
from rasterio.enums import ColorInterp
from rasterio.shutil import copy as gdal_copy
from rasterio.transform import Affine

UTM17 = "EPSG:32617"
ORIGIN = (500000.0, 4000000.0)  # UTM 17N, ~36 N 81 W
ORTHO_PX = 0.5  # m


def ortho_pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(3, h, w) uint8 'canopy': green noise with dark tree discs, so a foreground test has texture to find."""
    rng = np.random.default_rng(seed)
    rgb = np.stack([rng.normal(m, 12, (h, w)) for m in (70, 120, 60)])
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_ortho(path: Path, h: int = 1400, w: int = 1200, *, border: int = 300, alpha: bool = True,
                nodata: int | None = None, cog: bool = True, bigtiff: bool = True) -> Path:
    """An RGB orthomosaic (UTM 17N, 0.5 m) whose outer ``border`` px are outside the flight: alpha 0 there (or every
    band at ``nodata``). A COG (internal overviews) in BigTIFF by default, as drone software writes them."""
    rgb = ortho_pixels(h, w)
    inside = np.zeros((h, w), bool)
    inside[border:h - border, border:w - border] = True
    if nodata is not None:
        rgb[:, ~inside] = nodata
    bands = np.concatenate([rgb, (inside * 255).astype(np.uint8)[None]]) if alpha else rgb
    transform = Affine(ORTHO_PX, 0, ORIGIN[0], 0, -ORTHO_PX, ORIGIN[1])
    plain = path.with_name(path.stem + ".plain.tif")
    with rasterio.open(plain, "w", driver="GTiff", dtype="uint8", count=len(bands), width=w, height=h, crs=UTM17,
                       transform=transform, photometric="RGB", tiled=True, nodata=nodata,
                       **({"alpha": "YES"} if alpha else {})) as dst:
        dst.write(bands)
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + ([ColorInterp.alpha] if alpha
                                                                                     else [])
    if not cog:
        return plain
    gdal_copy(str(plain), str(path), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256,
              BIGTIFF="YES" if bigtiff else "NO", OVERVIEW_RESAMPLING="NEAREST")
    return path


def write_scene(path: Path, crs: str, transform: Affine, h: int = 200, w: int = 300, *, nodata: float = -9999.0,
                border: int = 20, bands: int = 2, seed: int = 1) -> Path:
    """A dual-pol float32 SAR-like scene (dB) with a nodata frame, bands described as VV/VH."""
    rng = np.random.default_rng(seed)
    data = rng.normal(-15, 3, (bands, h, w)).astype(np.float32)
    data[:, :border] = nodata
    data[:, :, :border] = nodata
    with rasterio.open(path, "w", driver="GTiff", dtype="float32", count=bands, width=w, height=h, crs=crs,
                       transform=transform, nodata=nodata) as dst:
        dst.write(data)
        for i, name in enumerate(("VV", "VH")[:bands]):
            dst.set_band_description(i + 1, name)
    return path


def to_map(transform, x, y):
    """Pixel-corner (x, y) -> map (X, Y) through a rasterio Affine."""
    a, b, c, d, e, f = tuple(transform)[:6]
    x, y = np.asarray(x, float), np.asarray(y, float)
    return a * x + b * y + c, d * x + e * y + f


def write_vectors(path: Path, geoms: list, fields: dict[str, list], crs: str, layer: str | None = None,
                  driver: str | None = None) -> Path:
    """Features to a GIS file (GeoPackage, Shapefile, GeoJSON, by suffix unless ``driver``) with pyogrio."""
    arr = np.array(geoms, dtype=object)
    kinds = {g.geom_type for g in geoms}
    kind = kinds.pop() if len(kinds) == 1 else "Unknown"
    values = [np.asarray(v, dtype=object if isinstance(v[0], str) else None) for v in fields.values()]
    pyogrio.raw.write(str(path), shapely.to_wkb(arr), values, list(fields), layer=layer, driver=driver,
                      geometry_type=kind, crs=crs)
    return path
