"""``napari-xt info IMAGE``: what the reader sees (levels, pixel size, vendor, kind), as text or JSON."""

from __future__ import annotations

import argparse
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
        "levels": [
            {"shape": list(lvl.shape), "downsample": float(ds)}
            for lvl, ds in zip(image.levels, image.downsamples, strict=True)
        ],
    }


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
    print(f"  pixel    {f'{size[1]:g} x {size[0]:g} {unit}' if size else 'unknown'}")
    print(f"  tiles    {'x'.join(map(str, info['tile_size'])) if info['tile_size'] else '-'}")
    for i, lvl in enumerate(info["levels"]):
        h, w, c = lvl["shape"]
        print(f"  level {i}  {w} x {h} x {c}  (downsample {lvl['downsample']:g})")
    return 0
