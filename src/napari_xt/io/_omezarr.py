"""OME-Zarr (NGFF multiscales, v0.4 on zarr v2 and v0.5 on zarr v3) through zarr itself.

Only the first multiscale image is used; t/z axes are read at index 0. bioformats2raw layouts (image in group "0")
are followed one level down, because that is what most converters produce.
"""

from __future__ import annotations

import os
from typing import cast

import numpy as np
import zarr

from ._geo import Georef, georef_from_attrs
from ._large_image import ImageReadError, LargeImage
from ._sar import guess_kind
from ._tiff import _UNIT_TO_M, _UNIT_TO_UM, _jsonable

_NGFF_UNITS = {"nanometer": "nm", "micrometer": "um", "millimeter": "mm", "centimeter": "cm", "meter": "m",
               "kilometer": "km"}


class _NgffSource:
    def __init__(self, arr, axes: list[str]):
        self._arr, self._axes = arr, axes
        self._ch = "c" if "c" in axes else None
        ny, nx = axes.index("y"), axes.index("x")
        self.shape = (arr.shape[ny], arr.shape[nx], arr.shape[axes.index("c")] if self._ch else 1)
        self.dtype = np.dtype(arr.dtype)
        self.tile = (arr.chunks[ny], arr.chunks[nx])
        self.reads = 0

    def read(self, y0, y1, x0, x1):
        self.reads += 1
        key, kept = [], []
        for ax in self._axes:
            if ax in ("y", "x", "c"):
                key.append({"y": slice(y0, y1), "x": slice(x0, x1), "c": slice(None)}[ax])
                kept.append(ax)
            else:
                key.append(0)
        data = np.asarray(self._arr[tuple(key)])
        data = data.transpose([kept.index(a) for a in ("y", "x", "c") if a in kept])
        return data if self._ch else data[:, :, None]


def _multiscales(group) -> tuple[list, dict]:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # v0.5 nests under "ome"
    return ome.get("multiscales") or [], ome


def open_omezarr(path: str) -> LargeImage:
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as err:
        raise ImageReadError(f"{path} is a folder but not a readable Zarr store ({type(err).__name__}).") from err
    multiscales, ome = _multiscales(group)
    if not multiscales and "0" in group and isinstance(group["0"], zarr.Group):
        group = group["0"]
        multiscales, ome = _multiscales(group)
    if not multiscales:
        raise ImageReadError(f"{path} is a Zarr store without OME-Zarr 'multiscales' metadata, so it is not an "
                             "image this reader understands.")
    try:
        ms = multiscales[0]
        axes = [a["name"].lower() if isinstance(a, dict) else str(a).lower() for a in ms.get("axes", [])]
        units = {a["name"].lower(): a.get("unit") for a in ms.get("axes", []) if isinstance(a, dict)}
        datasets = ms["datasets"]
        arrays = [cast("zarr.Array", group[d["path"]]) for d in datasets]  # a group here fails below, as before
        if not axes:  # v0.1-0.3 had no axes: the spec fixed them to tczyx
            axes = list("tczyx")[-arrays[0].ndim:]
        if "y" not in axes or "x" not in axes or len(axes) != arrays[0].ndim:
            raise ImageReadError(f"{path}: the OME-Zarr axes {axes} do not describe a 2-D (y, x) image.")
        sources = [_NgffSource(a, axes) for a in arrays]
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"{path} has OME-Zarr metadata that does not match its arrays "
                             f"({type(err).__name__}: {err}).") from err
    pixel_size, unit = _scale(datasets[0], axes, units)
    georef = _georef(group, ome, arrays[0])
    if georef is not None:  # the map transform is the authority on a georeferenced image's pixel size
        sy, sx = georef.pixel_size()
        pixel_size, unit = ((sy, sx), "deg") if georef.geographic else ((sy * georef.unit_m, sx * georef.unit_m), "m")
    channels = [ch.get("label") for ch in (ome.get("omero") or {}).get("channels", [])]
    c = sources[0].shape[2]
    band_names = channels if len(channels) == c and all(channels) else None
    if band_names is None and c in (3, 4) and sources[0].dtype == np.uint8:
        band_names = ["R", "G", "B", "A"][:c]
    kind = guess_kind(sources[0].dtype, c, vendor="ome", pixel_unit=unit)
    return LargeImage(
        path, sources, format="ome-zarr", vendor="ome", pixel_size=pixel_size, pixel_unit=unit,
        band_names=band_names, kind=kind, metadata={"ome": _jsonable(ome)},
        tile_size=sources[0].tile, name_token=f"{abs(hash((path, os.stat(path).st_mtime_ns)))}", georef=georef,
    )


def _georef(group, ome: dict, first) -> Georef | None:
    """GeoZarr ``proj:``/``spatial:`` attributes on the image group (or its ``ome`` member, or level 0's array)."""
    for attrs in (ome, dict(group.attrs), dict(first.attrs)):
        found = georef_from_attrs(attrs)
        if found is not None:
            return found
    return None


def _scale(dataset: dict, axes: list[str], units: dict) -> tuple[tuple[float, float] | None, str | None]:
    scale = next((t["scale"] for t in dataset.get("coordinateTransformations", []) if t.get("type") == "scale"),
                 None)
    if scale is None:
        return None, None
    unit = _NGFF_UNITS.get(units.get("x") or "", units.get("x"))
    sy, sx = float(scale[axes.index("y")]), float(scale[axes.index("x")])
    if unit in _UNIT_TO_M:
        return (sy * _UNIT_TO_M[unit], sx * _UNIT_TO_M[unit]), "m"
    if unit in _UNIT_TO_UM:
        return (sy * _UNIT_TO_UM[unit], sx * _UNIT_TO_UM[unit]), "um"
    return None, None
