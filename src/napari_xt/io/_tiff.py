"""tifffile backend: OME-TIFF (SubIFD pyramids), GeoTIFF, BigTIFF, plain/generic TIFF, and SVS/NDPI pixels.

Pixels go through ``series.aszarr()`` + ``zarr.open(store, mode="r")``: slicing decodes only the tiles touched and
was ~4x faster than OpenSlide's ``read_region`` here (docs/reader.md). The headers are checked before anything is
read, because a hostile or broken header (10^7 x 10^7 px, offsets past the end of the file) must become a clear
:class:`ImageReadError` rather than a huge allocation or a decoder traceback later.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from enum import Enum

import numpy as np
import tifffile
import zarr

from ._geo import georef_from_geotiff
from ._large_image import ImageReadError, LargeImage
from ._sar import gdal_band_names, guess_kind, parse_gdal_nodata, polarisations_from_name

#: a single decoding unit (tile or strip) larger than this cannot be read piecewise; refuse instead of allocating
MAX_CHUNK_BYTES = 1 << 31
#: TIFF resolution tags are often left at 72/96/300 dpi by software that knows nothing of microscopy; a "pixel size"
#: above this many micrometres is treated as unknown
MAX_PLAUSIBLE_UM = 50.0
_UNIT_TO_UM = {"nm": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "mm": 1e3, "cm": 1e4}
_UNIT_TO_M = {"m": 1.0, "meter": 1.0, "km": 1e3}


class _ZarrSource:
    """One level of a tifffile zarr store, seen as (y, x, c) whatever the file's axis order."""

    def __init__(self, arr, axes: str, drop_alpha: bool, alpha_only: bool = False):
        self._arr = arr
        self._axes = axes
        self._ch = next((a for a in "SC" if a in axes and arr.shape[axes.index(a)] > 1), None)
        h, w = arr.shape[axes.index("Y")], arr.shape[axes.index("X")]
        c = arr.shape[axes.index(self._ch)] if self._ch else 1
        self._nch = c - 1 if drop_alpha and c > 1 else c
        # the alpha source reads the last sample alone; the image source the ones before it
        self._channels = slice(c - 1, c) if alpha_only else slice(0, self._nch)
        self.shape = (h, w, 1 if alpha_only else self._nch)
        self.dtype = np.dtype(arr.dtype)
        self.tile = (arr.chunks[axes.index("Y")], arr.chunks[axes.index("X")])
        self.reads = 0

    def read(self, y0, y1, x0, x1):
        self.reads += 1
        key, kept = [], []
        for ax in self._axes:
            if ax == "Y":
                key.append(slice(y0, y1))
            elif ax == "X":
                key.append(slice(x0, x1))
            elif ax == self._ch:
                key.append(self._channels)
            else:
                key.append(0)  # first plane of T/Z/extra axes (and a size-1 C/S)
                continue
            kept.append(ax)
        data = np.asarray(self._arr[tuple(key)])
        order = [kept.index("Y"), kept.index("X")] + ([kept.index(self._ch)] if self._ch else [])
        data = data.transpose(order)
        return data if self._ch else data[:, :, None]


def open_tiff(path: str) -> LargeImage:
    try:
        tif = tifffile.TiffFile(path)
    except Exception as err:
        raise ImageReadError(f"{path} is not a readable TIFF file ({_reason(err)}).") from err
    try:
        return _build(path, tif)
    except ImageReadError:
        tif.close()
        raise
    except Exception as err:
        tif.close()
        raise ImageReadError(f"{path} could not be read as a TIFF image ({_reason(err)}).") from err


def _build(path: str, tif: tifffile.TiffFile) -> LargeImage:
    if not tif.series:
        raise ImageReadError(f"{path} contains no images (the TIFF has no readable pages).")
    series = tif.series[0]
    axes = series.axes
    if "Y" not in axes or "X" not in axes:
        raise ImageReadError(f"{path}: the first image has axes {axes!r}, not a 2-D image with Y and X.")
    _check_levels(path, series)
    page = series.keyframe
    drop_alpha = _has_alpha(page, series.dtype)
    store = series.aszarr()
    root = zarr.open(store, mode="r")
    arrays = [root[str(i)] for i in range(len(series.levels))] if isinstance(root, zarr.Group) else [root]
    sources = [_ZarrSource(a, axes, drop_alpha) for a in arrays]
    alpha = [_ZarrSource(a, axes, drop_alpha, alpha_only=True) for a in arrays] if drop_alpha else None

    vendor = _vendor(tif)
    desc = page.description or ""
    meta: dict = {"tiff": _page_tags(page), "series": {"name": series.name, "kind": series.kind, "axes": axes}}
    pixel_size, unit = _tiff_resolution(page)
    band_names = None
    fluorescence = False
    nodata = None
    geo = False
    georef = None
    c = sources[0].shape[2]
    if vendor == "aperio":
        svs = _svs_properties(desc)
        meta["aperio"] = svs
        if "MPP" in svs:
            mpp = float(svs["MPP"])
            pixel_size, unit = (mpp, mpp), "um"
    elif vendor == "hamamatsu":
        ndpi = {k: _jsonable(v) for k, v in (page.ndpi_tags or {}).items() if k != "McuStarts"}
        meta["hamamatsu"] = ndpi
        fluorescence = bool(ndpi.get("Fluorescence"))
    elif vendor == "ome":
        ome = _ome_pixels(tif.ome_metadata or "")
        meta["ome"] = {k: v for k, v in ome.items() if k != "xml"}
        if ome.get("size"):
            pixel_size, unit = ome["size"], ome["unit"]
        band_names = ome.get("channels")
    if tif.is_geotiff or 33550 in page.tags:
        geo = True
        vendor = "geotiff" if vendor == "generic-tiff" else vendor
        gmeta = tif.geotiff_metadata or {}
        meta["geotiff"] = {k: _jsonable(v) for k, v in gmeta.items()}
        georef = georef_from_geotiff(path, gmeta)
        if georef is not None:  # from the transform, so rotated (ModelTransformation) and feet CRSs are right too
            sy, sx = georef.pixel_size()
            pixel_size, unit = ((sy, sx), "deg") if georef.geographic else ((sy * georef.unit_m, sx * georef.unit_m),
                                                                            "m")
    if 42113 in page.tags:
        nodata = parse_gdal_nodata(page.tags[42113].value)
        meta["gdal_nodata"] = str(page.tags[42113].value).strip("\x00")
    if 42112 in page.tags:
        band_names = band_names or gdal_band_names(page.tags[42112].value, c)
    if band_names is None and np.issubdtype(series.dtype, np.floating):
        band_names = polarisations_from_name(os.path.basename(path), c)
    if band_names is None and c in (3, 4) and page.photometric == tifffile.PHOTOMETRIC.RGB:
        band_names = ["R", "G", "B", "A"][:c]
    tiled = page.is_tiled or vendor == "hamamatsu"
    tile = sources[0].tile if tiled else None
    kind = guess_kind(series.dtype, c, vendor=vendor, pixel_unit=unit if pixel_size else None,
                      fluorescence=fluorescence, geo=geo)
    st = os.stat(path)
    return LargeImage(
        path, sources, format="tifffile", vendor=vendor, pixel_size=pixel_size, pixel_unit=unit,
        band_names=band_names, kind=kind, nodata=nodata, metadata=meta, tile_size=tile,
        closers=[store.close, tif.close], name_token=f"{abs(hash((path, st.st_mtime_ns, st.st_size)))}",
        georef=georef, alpha=alpha,
    )


def _has_alpha(page, dtype) -> bool:
    """An alpha band as the last sample: 8-bit RGBA, or any image whose ExtraSamples tag marks its last sample as
    (associated or unassociated) alpha, as GDAL writes orthomosaics. It is kept aside as a mask, not shown."""
    n = int(page.samplesperpixel or 1)
    if n < 2:
        return False
    if np.dtype(dtype) == np.uint8 and page.photometric == tifffile.PHOTOMETRIC.RGB and n == 4:
        return True
    extra: tuple = tuple(page.extrasamples or ())
    return bool(extra) and int(getattr(extra[-1], "value", extra[-1])) in (1, 2)


def _check_levels(path: str, series) -> None:
    """Refuse headers that promise pixels the file cannot hold, before any decoder or allocation sees them."""
    size = os.path.getsize(path)
    for i, level in enumerate(series.levels):
        for page in level.pages:
            if page is None or not hasattr(page, "dataoffsets"):
                continue
            kf = page.keyframe
            offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            counts = np.asarray(page.databytecounts, dtype=np.int64)
            chunk_bytes = float(np.prod(kf.chunks, dtype=np.float64)) * np.dtype(kf.dtype).itemsize
            what = f"level {i} ({kf.imagelength} x {kf.imagewidth} px)"
            if counts.size == 0 or not counts.any():
                raise ImageReadError(f"{path} has no pixel data for {what}: the header describes the image, "
                                     "but no tile or strip holds any bytes.")
            if (offsets + counts).max() > size:
                raise ImageReadError(f"{path} is truncated: {what} needs bytes up to offset "
                                     f"{int((offsets + counts).max())}, but the file has only {size} bytes.")
            if chunk_bytes > MAX_CHUNK_BYTES:
                raise ImageReadError(f"{path}: the header says {what} is stored in blocks of "
                                     f"{chunk_bytes / 2**30:.1f} GiB each, too large to read piece by piece; the "
                                     "file is damaged or must be converted to a tiled TIFF.")
            if kf.compression == 1 and kf.is_tiled and counts[counts > 0].min() < chunk_bytes:
                raise ImageReadError(f"{path} is damaged: the uncompressed tiles of {what} are shorter than the "
                                     "tile size in the header.")
        if i == 0 and series.levels[0].pages and series.levels[0].pages[0] is None:
            raise ImageReadError(f"{path}: the first image page cannot be read.")


def _vendor(tif: tifffile.TiffFile) -> str:
    for flag, name in (("is_svs", "aperio"), ("is_ndpi", "hamamatsu"), ("is_ome", "ome"), ("is_scn", "leica"),
                       ("is_philips", "philips"), ("is_bif", "ventana")):
        if getattr(tif, flag, False):
            return name
    return "generic-tiff"


def _svs_properties(desc: str) -> dict:
    props = {}
    for part in desc.split("|")[1:]:
        if "=" in part:
            k, v = part.split("=", 1)
            props[k.strip()] = v.strip()
    return props


def _tiff_resolution(page) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel size in um from X/YResolution when the unit is cm or inch and the value is plausible for microscopy."""
    try:
        unit = int(page.resolutionunit)
        xres, yres = page.resolution
    except Exception:
        return None, None
    per_um = {2: 25400.0, 3: 1e4}.get(unit)
    if per_um is None or not xres or not yres:
        return None, None
    sx, sy = per_um / xres, per_um / yres
    if sx > MAX_PLAUSIBLE_UM or sy > MAX_PLAUSIBLE_UM:
        return None, None
    return (sy, sx), "um"


def _ome_pixels(xml: str) -> dict:
    """PhysicalSize and channel names of the first OME Image (namespace-agnostic: several schema years exist)."""
    out: dict = {}
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return out
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return out
    sx, sy = pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeY")
    ux = pixels.get("PhysicalSizeXUnit", "µm")
    if sx and sy:
        fx, fy = float(sx), float(sy)
        if ux in _UNIT_TO_M:
            out["size"], out["unit"] = (fy * _UNIT_TO_M[ux], fx * _UNIT_TO_M[ux]), "m"
        elif ux in _UNIT_TO_UM:
            out["size"], out["unit"] = (fy * _UNIT_TO_UM[ux], fx * _UNIT_TO_UM[ux]), "um"
    names = [ch.get("Name") for ch in pixels if ch.tag.rsplit("}", 1)[-1] == "Channel"]
    if names and all(names):
        out["channels"] = names
    out["size_unit_in_file"] = ux
    return out


def _page_tags(page) -> dict:
    out = {}
    for tag in page.tags:
        if tag.code in (273, 279, 324, 325, 347, 65426) or tag.code > 65000:  # offsets, tables, vendor blobs
            continue
        value = _jsonable(tag.value)
        if value is not None:
            out[tag.name] = value
    return out


def _jsonable(value, depth: int = 0):
    """Small JSON-friendly copy of a tag value; big arrays and binary blobs are dropped (metadata must stay light)."""
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value[:20000] if isinstance(value, str) else value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else None
    if isinstance(value, (list, tuple)) and depth < 3:
        return [_jsonable(v, depth + 1) for v in value[:64]]
    if isinstance(value, dict) and depth < 3:
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    return None


def _reason(err: Exception) -> str:
    text = re.sub(r"\s+", " ", str(err)).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
