"""``napari-xt convert-xt CKPT --out MODEL.safetensors``: import a released xT checkpoint into our format."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("convert-xt", help="convert a released xT .ckpt (torch pickle) into a napari-xt .safetensors")
    p.add_argument("ckpt", help="released xT checkpoint, e.g. swinv2-tiny-hyper-top1.ckpt")
    p.add_argument("--out", required=True, help="output .safetensors path")
    p.add_argument("--image-size", type=int, default=512, help="input size the checkpoint was trained at")
    p.add_argument("--region-size", type=int, default=256, help="the reference's region size (our sub-region)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..model.xt_import import convert_xt

    path = convert_xt(args.ckpt, args.out, image_size=args.image_size, region_size=args.region_size)
    print(f"wrote {path}")
    return 0
