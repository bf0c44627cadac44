"""``napari-xt sample tissue|sar OUT``: write a synthetic sample as a real tiled OME-TIFF pyramid.

Gives a newcomer (and the quick start) a real file on disk that exercises the same reader as a scanner's slide.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="write the synthetic tissue slide or SAR scene as a tiled OME-TIFF pyramid")
    p.add_argument("which", choices=["tissue", "sar"], help="which synthetic sample")
    p.add_argument("out", help="output path, e.g. slide.ome.tif")
    p.add_argument("--size", type=int, default=4096, help="level-0 width and height in pixels (default 4096)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", metavar="PATH", help="also write the exact ground-truth class map as a label "
                   "OME-TIFF pyramid (uint8; 255 = SAR nodata) for `napari-xt train --labels`")
    p.add_argument("--objects", metavar="PATH.csv", help="SAR only: also write the ships as a CSV "
                   "(x, y, width, height, class; level-0 px) for `napari-xt train --points`")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..synthetic import SarSample, TissueSample
    from ..synthetic.export import write_ome_tiff

    out = Path(args.out)
    for path in (out, args.labels, args.objects):
        if path and Path(path).exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if args.objects and args.which != "sar":
        raise ValueError("--objects is for the SAR sample (its ships); the tissue sample has --labels")
    if args.size < 256 or args.size > 200_000:
        raise ValueError(f"--size must be between 256 and 200000, got {args.size}")
    cls = TissueSample if args.which == "tissue" else SarSample
    sample = cls(args.size, args.size, seed=args.seed)
    write_ome_tiff(sample, out, progress=True)
    print(f"wrote {out} ({args.size} x {args.size}, {len(sample.levels)} levels)")
    if args.labels:
        write_ome_tiff(_LabelPyramid(sample), args.labels, progress=True)
        print(f"wrote {args.labels} (classes: {', '.join(sample.class_names)})")
    if args.objects:
        n = write_ships_csv(sample, args.objects)
        print(f"wrote {args.objects} ({n} ships)")
    return 0


class _LabelPyramid:
    """A sample's ground-truth label levels shaped like an image sample, so the OME-TIFF writer takes them."""

    band_names = ("labels",)

    def __init__(self, sample):
        self.levels = [lvl[..., None] for lvl in sample.label_levels]
        self.pixel_size = sample.pixel_size


def write_ships_csv(sample, path) -> int:
    """Ships as axis-aligned boxes around their rotated hulls, in level-0 px (the points format ``train`` reads)."""
    import csv
    import os

    import numpy as np

    ships = sample.ships()
    c, s = np.abs(np.cos(ships["angle"])), np.abs(np.sin(ships["angle"]))
    height = ships["length"] * c + ships["width"] * s
    width = ships["length"] * s + ships["width"] * c
    tmp = Path(str(path) + ".partial")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["x", "y", "width", "height", "class"])
        for row in zip(ships["x"], ships["y"], width, height, strict=True):
            writer.writerow([f"{v:.2f}" for v in row] + ["ship"])
    os.replace(tmp, path)
    return len(ships)
