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
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..synthetic import SarSample, TissueSample
    from ..synthetic.export import write_ome_tiff

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if args.size < 256 or args.size > 200_000:
        raise ValueError(f"--size must be between 256 and 200000, got {args.size}")
    cls = TissueSample if args.which == "tissue" else SarSample
    sample = cls(args.size, args.size, seed=args.seed)
    write_ome_tiff(sample, out, progress=True)
    print(f"wrote {out} ({args.size} x {args.size}, {len(sample.levels)} levels)")
    return 0
