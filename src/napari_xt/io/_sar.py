"""SAR specifics and the image-kind rule, shared by all backends so a file gets the same ``kind`` however it is read.

SAR scenes arrive as float GeoTIFFs (dB or linear power) with GDAL's nodata tag and band descriptions in GDAL's XML
metadata; nothing else in the file says "this is radar", so the rule falls back on dtype and band count.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
from numpy.typing import DTypeLike

_POLARISATIONS = ("VV", "VH", "HH", "HV")


def parse_gdal_nodata(text) -> float | None:
    """GDAL_NODATA (tag 42113) is ASCII; NaN is reported as None because NaN is always treated as nodata."""
    if text is None:
        return None
    try:
        value = float(str(text).strip().strip("\x00"))
    except ValueError:
        return None
    return None if math.isnan(value) else value


def gdal_band_names(xml_text, n_bands: int) -> list[str] | None:
    """Band descriptions from GDAL_METADATA (tag 42112): ``<Item name="DESCRIPTION" sample="i" role=...>``."""
    if not xml_text:
        return None
    try:
        root = ET.fromstring(str(xml_text).strip().strip("\x00"))
    except ET.ParseError:
        return None
    names: dict[int, str] = {}
    for item in root.iter("Item"):
        sample = item.get("sample")
        if item.get("name", "").upper() == "DESCRIPTION" and sample is not None and item.text:
            names[int(sample)] = item.text.strip()
    if len(names) == n_bands:
        return [names[i] for i in range(n_bands)]
    return None


def polarisations_from_name(name: str, n_bands: int) -> list[str] | None:
    """Sentinel-1 style file names carry the polarisation(s) (``..._VV_...``) when the tags do not."""
    found = [p for p in _POLARISATIONS if re.search(rf"(^|[^A-Za-z]){p}([^A-Za-z]|$)", name, re.IGNORECASE)]
    if len(found) == n_bands:
        return found
    return None


def guess_kind(
    dtype: DTypeLike,
    channels: int,
    *,
    vendor: str | None,
    pixel_unit: str | None,
    fluorescence: bool = False,
    geo: bool = False,
) -> str:
    """brightfield | fluorescence | sar | generic, from what the file says about itself (see docs/reader.md)."""
    dtype = np.dtype(dtype)
    slide_vendor = vendor not in (None, "generic-tiff", "geotiff")
    if np.issubdtype(dtype, np.floating):
        if geo or pixel_unit == "m" or channels <= 2:
            return "sar"
        return "generic"
    if fluorescence:
        return "fluorescence"
    if dtype == np.uint8 and channels in (3, 4):
        return "brightfield" if (slide_vendor or pixel_unit == "um") else "generic"
    microscopy = slide_vendor or pixel_unit == "um"
    if microscopy and (channels >= 2 or dtype.itemsize >= 2 or vendor == "ome"):
        return "fluorescence"
    return "generic"
