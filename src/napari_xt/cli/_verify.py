"""``napari-xt verify STORE [--deep]``: is a result store whole? Prints what is damaged, by region, and the repair.

Why a command of its own: a store copied to another disk, synced through a cloud folder or left on a full share may
have lost files while its done flags still say "complete"; resume, export and the viewer each check cheaply when
they open a store, but a user about to archive or hand over results wants the answer (and its exit code) alone.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_SOUND, EXIT_DAMAGED = 0, 1
_SHOWN_REGIONS = 20


def add_parser(sub) -> None:
    p = sub.add_parser(
        "verify", help="check a result store: layout, every done region's chunks on disk (--deep: they decode)",
        description="Check a napari-xt result store against its own metadata: the root metadata and every array's "
                    "shape, dtype and chunking, and that every region marked done has its chunk files on disk (a "
                    "file listing: cheap, safe on a lazily synced folder). --deep also decodes every chunk. Prints "
                    "what is damaged, by region, and the command that repairs it (`napari-xt predict ... --resume`, "
                    "with --verify when chunks do not decode). Exit code 0: sound; 1: damaged or not a store.",
    )
    p.add_argument("store", help="result store folder written by `napari-xt predict` or the dock")
    p.add_argument("--deep", action="store_true", help="also decode every chunk file (reads the whole store)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..store.verify import verify

    report = verify(args.store, deep=args.deep)
    if args.json:
        print(json.dumps(_as_dict(report)))
    else:
        _print(report)
    return EXIT_SOUND if report.ok else EXIT_DAMAGED


def _as_dict(report) -> dict:
    return {
        "store": str(report.path), "ok": report.ok, "deep": report.deep, "seconds": round(report.seconds, 3),
        "regions_total": report.regions_total, "regions_done": report.regions_done, "fix": report.fix,
        "damages": [{"part": d.part, "problem": d.problem, "regions": list(d.regions), "fix": d.fix,
                     "chunks": list(d.chunks)} for d in report.damages],
        "regions_damaged": sorted(report.by_region()), "notes": list(report.notes),
    }


def _print(report) -> None:
    check = "deep check" if report.deep else "cheap check (file listing)"
    if report.ok:
        print(f"store {report.path}: sound ({report.regions_done} of {report.regions_total} regions done; {check} "
              f"in {report.seconds:.2f} s)")
    else:
        regions = report.by_region()
        affected = f"{len(regions)} region(s) affected; " if regions else ""
        print(f"store {report.path}: DAMAGED ({affected}{check} in {report.seconds:.2f} s)")
        for d in report.damages:
            ids = ", ".join(map(str, d.regions[:8])) + (", ..." if len(d.regions) > 8 else "")
            print(f"  {d.part}: {d.problem}" + (f" ({len(d.regions)} region(s): {ids})" if d.regions else ""))
        if regions:
            print("by region:")
            for region, parts in list(regions.items())[:_SHOWN_REGIONS]:
                print(f"  region {region}: {', '.join(dict.fromkeys(parts))}")
            if len(regions) > _SHOWN_REGIONS:
                print(f"  ... and {len(regions) - _SHOWN_REGIONS} more (--json lists them all)")
        print(f"repair: {_repair(report)}")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)


def _repair(report) -> str:
    image = report.meta.get("image") or "IMAGE"
    model = report.meta.get("model") or "MODEL"
    if report.fix == "remake":
        return (f"its own metadata is lost, so it cannot be resumed: make it again with `napari-xt predict IMAGE "
                f"--model MODEL --out {report.path} --overwrite`")
    flags = "--resume --verify" if report.fix == "verify" else "--resume"
    return (f"`napari-xt predict {image} --model {model} --out {report.path} {flags}` with the options of its first "
            "run redoes the damaged regions")
