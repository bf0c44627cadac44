"""``napari-xt predict IMAGE --model MODEL --out STORE``: the streaming engine from the command line.

Several images (paths, globs, ``@list.txt``) or ``--out-dir DIR`` make it a batch run on dask.distributed, one
result store per image (see :mod:`._batch` and docs/batch.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from . import _batch


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="run an xT model over an image region by region into a result store")
    p.add_argument("image", nargs="+", metavar="IMAGE", help="slide, TIFF/OME-TIFF/GeoTIFF or OME-Zarr; several, globs or @list.txt "
                   "(one path per line) make a batch run into --out-dir")
    p.add_argument("--model", required=True, help="checkpoint (.safetensors, released xT .ckpt) or a preset name")
    p.add_argument("--out", metavar="STORE", help="result store folder (zarr v3) of a single image")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=4, help="regions encoded together (default 4)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mpp", type=float, help="analysis pixel size (default: the model's, else level 0)")
    where.add_argument("--level", type=int, help="pyramid level to analyse")
    p.add_argument("--region-size", type=int, help="region size in analysis px (default: the model's)")
    p.add_argument("--overlap", type=int, default=0, help="region overlap in px (default 0)")
    p.add_argument("--context", default="window", choices=["window", "global"], help="context mode (default window)")
    p.add_argument("--window-size", type=int, default=4, help="regions per window side in window mode (default 4)")
    p.add_argument("--order", default="row-major", choices=["row-major", "serpentine", "nearest"])
    p.add_argument("--roi", help="region of interest in level-0 px: 'y0,x0,y1,x1' or 'y,x;y,x;y,x;...' (polygon)")
    p.add_argument("--no-mask", action="store_true", help="run every region (no foreground mask)")
    p.add_argument("--probabilities", action="store_true", help="also store per-class probability maps (uint8)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out (a batch always resumes)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out (batch: replace stores made by "
                   "another model or plan; finished matching ones are still skipped)")
    p.add_argument("--json", action="store_true", help="no progress bar; print one JSON summary at the end")
    _batch.add_arguments(p)
    p.set_defaults(run=run, predict_parser=p)


def parse_roi(text: str | None):
    if not text:
        return None
    try:
        if ";" in text:
            return [tuple(float(v) for v in pt.split(",")) for pt in text.split(";") if pt.strip()]
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--roi {text!r}: expected numbers like 'y0,x0,y1,x1' or 'y,x;y,x;y,x'") from None
    if len(vals) != 4:
        raise ValueError(f"--roi {text!r}: a rectangle needs 4 numbers y0,x0,y1,x1")
    return vals


def request_fields(args: argparse.Namespace) -> dict:
    """The PredictRequest fields shared by every image of a run (everything but image, out, resume, overwrite)."""
    return {"model": args.model, "device": args.device, "precision": args.precision, "batch_size": args.batch_size,
            "mpp": args.mpp, "level": args.level, "region_size": args.region_size, "overlap": args.overlap,
            "context": args.context, "window_size": args.window_size, "order": args.order,
            "roi": parse_roi(args.roi), "use_mask": not args.no_mask, "probabilities": args.probabilities}


def run(args: argparse.Namespace) -> int:
    image = _batch.single_image(args)
    if image is None:
        return _batch.run(args, request_fields(args))
    return run_single(args, image)


def run_single(args: argparse.Namespace, image: str) -> int:
    from ..engine.predict import PredictRequest, predict

    request = PredictRequest(image=image, out=args.out, resume=args.resume, overwrite=args.overwrite,
                             **request_fields(args))
    t0 = time.perf_counter()
    progress = None if args.json else _Progress()
    summary = predict(request, on_start=progress.start if progress else None,
                      on_region=progress.update if progress else None)
    if progress:
        progress.stop()
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['regions_done']} regions done, {summary['regions_skipped']} skipped, "
            f"{summary['regions_failed']} failed in {summary['seconds']:.1f} s "
            f"({summary['regions_per_s']:.2f} regions/s) -> {summary['store']}"
        )
    if summary["regions_failed"]:
        print(f"napari-xt predict: {summary['regions_failed']} region(s) could not be read; "
              "re-run with --resume to retry them", file=sys.stderr)
        return 1
    return 0


class _Progress:
    """A rich progress bar: regions, regions/s, ETA."""

    def start(self, total: int, already_done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]} regions/s"), TimeElapsedColumn(), TimeRemainingColumn())
        self.task = self.bar.add_task("regions", total=total, completed=already_done, rate="-")
        self.t0, self.base = time.perf_counter(), already_done
        self.bar.start()

    def update(self, result) -> None:
        rate = (result.n_done - self.base) / max(time.perf_counter() - self.t0, 1e-9)
        self.bar.update(self.task, completed=result.n_done, rate=f"{rate:.2f}")

    def stop(self) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()
