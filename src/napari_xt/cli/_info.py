"""``napari-xt info IMAGE``: what the reader sees (levels, pixel size, vendor, kind), as text or JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..io import LargeImage


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="describe an image: levels, shapes, dtype, pixel size, vendor, tile size, kind")
    p.add_argument("image", help="slide, TIFF/OME-TIFF/GeoTIFF or OME-Zarr folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)


def describe(image: LargeImage) -> dict[str, Any]:
    return {
        "path": image.path,
        "format": image.format,
        "vendor": image.vendor,
        "kind": image.kind,
        "dtype": str(image.dtype),
        "bands": list(image.band_names),
        "pixel_size": list(image.pixel_size) if image.pixel_size else None,
        "pixel_unit": image.pixel_unit,
        "tile_size": list(image.tile_size) if image.tile_size else None,
        **_geo(image),
        "levels": [
            {"shape": list(lvl.shape), "downsample": float(ds)}
            for lvl, ds in zip(image.levels, image.downsamples, strict=True)
        ],
    }


def _geo(image: LargeImage) -> dict[str, Any]:
    """CRS, transform and metric pixel size of a georeferenced image (nothing for a slide)."""
    out: dict[str, Any] = {}
    georef = getattr(image, "georef", None)
    if georef is not None:
        out["crs"] = {"label": georef.label, "epsg": georef.epsg, "wkt": georef.crs,
                      "transform": list(georef.transform)}
        if georef.geographic:
            from ..errors import GeoDependencyMissing

            with contextlib.suppress(GeoDependencyMissing):  # info still describes the file; predict says what to add
                out["pixel_size_m"] = list(georef.metres_per_pixel(tuple(image.levels[0].shape[:2])))
    if getattr(image, "alpha", None) is not None:
        out["mask"] = "alpha band (transparent pixels are not analysed)"
    elif image.nodata is not None:
        out["mask"] = f"nodata {image.nodata:g} (such pixels are not analysed)"
    return out


def run(args: argparse.Namespace) -> int:
    from ..io import open_image

    with open_image(args.image) as image:
        info = describe(image)
    if args.json:
        print(json.dumps(info))
        return 0
    size = info["pixel_size"]
    print(f"{info['path']}")
    print(f"  format   {info['format']} ({info['vendor'] or 'unknown vendor'}), kind {info['kind']}")
    print(f"  dtype    {info['dtype']}, bands {', '.join(info['bands']) or '-'}")
    unit = info["pixel_unit"] or ""
    metres = info.get("pixel_size_m")
    about = f" (~{metres[1]:.3g} x {metres[0]:.3g} m at the centre)" if metres and unit == "deg" else ""
    print(f"  pixel    {f'{size[1]:g} x {size[0]:g} {unit}' if size else 'unknown'}{about}")
    if info.get("crs") is not None:
        print(f"  crs      {info['crs']['label']}, origin {info['crs']['transform'][2]:.10g}, "
              f"{info['crs']['transform'][5]:.10g}")
    if info.get("mask"):
        print(f"  mask     {info['mask']}")
    print(f"  tiles    {'x'.join(map(str, info['tile_size'])) if info['tile_size'] else '-'}")
    for i, lvl in enumerate(info["levels"]):
        h, w, c = lvl["shape"]
        print(f"  level {i}  {w} x {h} x {c}  (downsample {lvl['downsample']:g})")
    return 0
