"""The label map as a Cloud-Optimized GeoTIFF that QGIS, GDAL and ArcGIS put straight onto the map.

What a GIS user expects of a classified raster: the source image's CRS and transform (so it overlays the
orthomosaic or the SAR scene), a colour table (QGIS's paletted renderer shows the classes in the model's colours at
once; a TIFF palette has no alpha, so class 0 is opaque too) and the class names (QGIS reads GDAL's category names
from the ``.aux.xml`` sidecar; they also travel inside the TIFF as band metadata), with internal overviews so a
country-sized map pans fast.

The overviews are the store's own label pyramid, not ones GDAL recomputes: tifffile writes level 0 and every store
level as reduced-resolution pages (tile by tile, so memory stays one tile), rasterio adds the CRS and the colour table
to that file, and GDAL's COG driver rewrites it in cloud-optimized order reusing those overviews
(``OVERVIEWS=FORCE_USE_EXISTING``). Everything goes to hidden siblings and is renamed into place when complete.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import tifffile

from ..io._geo import require
from ._common import ExportError, check_complete, check_out, open_store, provenance, segmentation_classes, written_aside
from ._geo import label_georef

TILE = 512


def export_geotiff(store, out, *, overwrite: bool = False, partial: bool = False, compress: str = "deflate",
                   counts: dict | None = None) -> Path:
    """Write the store's label map as a COG in the image's CRS; returns ``out`` (``out.aux.xml`` holds the names)."""
    store = open_store(store)
    georef = label_georef(store, 0) if store.labels else None
    if not store.labels:
        raise ExportError(f"store {store.path} has no label map (the model had no segmentation head); export its "
                          "detections with --format gpkg or geojson.")
    assert georef is not None
    rasterio = require("rasterio", "writing a GeoTIFF")
    from rasterio.shutil import copy as gdal_copy
    from rasterio.transform import Affine

    is_partial = check_complete(store, partial)
    out = check_out(out, overwrite, "GeoTIFF output")
    names, colors = segmentation_classes(store)
    levels = list(store.labels)
    dtype = np.dtype(levels[0].dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ExportError(f"store {store.path} has {dtype} labels; a GeoTIFF colour table needs 8 or 16-bit classes.")
    with tempfile.TemporaryDirectory(prefix=".napari-xt-geotiff-", dir=out.parent) as tmp:
        pyramid = Path(tmp) / "pyramid.tif"
        _write_pyramid(pyramid, levels, _colormap(colors, dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # it is about to be
            ds = rasterio.open(pyramid, "r+")
        with ds:
            ds.crs = rasterio.crs.CRS.from_user_input(georef.crs or f"EPSG:{georef.epsg}")
            ds.transform = Affine(*georef.transform)
            ds.write_colormap(1, {i: (*[int(v) for v in rgb[:3]], 255) for i, rgb in enumerate(colors)})
            ds.set_band_description(1, "class")
            ds.update_tags(1, CLASS_NAMES=json.dumps(names))
            ds.update_tags(NAPARI_XT=json.dumps(provenance(store, is_partial)))
        with written_aside(out) as final:
            gdal_copy(str(pyramid), str(final), driver="COG", COMPRESS=compress.upper(), BLOCKSIZE=TILE,
                      OVERVIEWS="FORCE_USE_EXISTING", BIGTIFF="IF_SAFER")
    _write_aux(out, names, colors)
    if counts is not None:
        counts.update({"levels": len(levels), "classes": len(names)})
    return out


def _write_pyramid(path: Path, levels: list, colormap: np.ndarray) -> None:
    """Level 0 and the store's coarser levels as reduced-resolution pages, palette-coded, tile by tile."""
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for i, level in enumerate(levels):
            h, w = (int(v) for v in level.shape[:2])
            tif.write(_tiles(level), shape=(h, w), dtype=level.dtype, tile=(TILE, TILE), photometric="palette",
                      colormap=colormap, compression="zlib", subfiletype=1 if i else 0, metadata=None)


def _tiles(level) -> Iterator[np.ndarray]:
    """The level's tiles in row-major order, edge tiles padded to the full tile (what the TIFF stores)."""
    h, w = (int(v) for v in level.shape[:2])
    for y in range(0, h, TILE):
        row = np.asarray(level[y:min(y + TILE, h), :])
        for x in range(0, w, TILE):
            tile = np.zeros((TILE, TILE), dtype=row.dtype)
            part = row[:, x:x + TILE]
            tile[:part.shape[0], :part.shape[1]] = part
            yield tile


def _colormap(colors: list[list[int]], dtype: np.dtype) -> np.ndarray:
    """TIFF ColorMap: 3 x 2**bits uint16 (0-65535), the class colours first, grey past them."""
    n = 256 if dtype == np.uint8 else 65536
    cmap = np.full((3, n), 128 * 257, dtype=np.uint16)
    for i, rgb in enumerate(colors[:n]):
        cmap[:, i] = [int(v) * 257 for v in rgb[:3]]
    return cmap


def _write_aux(out: Path, names: list[str], colors: list[list[int]]) -> None:
    """``out.aux.xml``: GDAL's category names (QGIS shows them as the legend of the paletted renderer)."""
    cats = "".join(f"      <Category>{escape(str(n))}</Category>\n" for n in names)
    text = ("<PAMDataset>\n  <PAMRasterBand band=\"1\">\n    <Description>class</Description>\n"
            f"    <CategoryNames>\n{cats}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n")
    aux = out.with_name(out.name + ".aux.xml")
    with written_aside(aux) as tmp:
        tmp.write_text(text, encoding="utf-8")
