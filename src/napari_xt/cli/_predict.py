"""``napari-xt predict IMAGE --model MODEL --out STORE``: the streaming engine from the command line.

Several images (paths, globs, ``@list.txt``) or ``--out-dir DIR`` make it a batch run on dask.distributed, one
result store per image (see :mod:`._batch` and docs/batch.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..app.events import RegionDone, RegionFailed, RunEvent, RunStarted
from ..app.request import PlanOptions, PredictRequest, RunOptions
from ..engine.options import CONTEXT_MODES, DEFAULT_SCORE_THRESHOLD, ORDERS, PRECISIONS
from . import _batch, _models


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="run an xT model over an image region by region into a result store")
    p.add_argument("image", nargs="+", metavar="IMAGE",
                   help="slide, TIFF/OME-TIFF/GeoTIFF or OME-Zarr; several, globs or @list.txt "
                   "(one path per line) make a batch run into --out-dir")
    p.add_argument("--model", required=True, help=_models.zoo_help(
        "checkpoint (.safetensors, released xT .ckpt/.pth) or a model named by `napari-xt models`: {names}",
        "demo", "preset", "imported"))
    p.add_argument("--out", metavar="STORE", help="result store folder (zarr v3) of a single image")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default auto)")
    p.add_argument("--precision", default=RunOptions().precision, choices=PRECISIONS,
                   help="auto (default): bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--batch-size", type=int, default=RunOptions().batch_size,
                   help=f"regions encoded together (default {RunOptions().batch_size})")
    p.add_argument("--window-batch", type=int, default=RunOptions().window_batch, metavar="N",
                   help="context windows run in lockstep, each with its own context memory, so a batch is not "
                   "limited to one window's regions; --batch-size is spread over them (window context only; "
                   f"default {RunOptions().window_batch})")
    p.add_argument("--first-region-alone", action="store_true", help="encode and write the first region on its own "
                   "before the rest, so the first result lands sooner (what the dock does; costs some throughput)")
    p.add_argument("--low-priority", action="store_true", help="run the engine's threads at a lower CPU priority "
                   "(nice +10, Linux), so a desktop or viewer on the same machine stays responsive (what the dock "
                   "does; costs the run almost nothing when nothing else wants the CPU)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--mpp", type=float, help="analysis pixel size in the image's unit, metres for a scene in "
                       "degrees (default: the model's, else level 0)")
    where.add_argument("--level", type=int, help="pyramid level to analyse")
    p.add_argument("--region-size", type=int, help="region size in analysis px (default: the model's)")
    p.add_argument("--overlap", type=int, default=0, help="region overlap in px (default 0)")
    p.add_argument("--context", default="window", choices=CONTEXT_MODES, help="context mode (default window)")
    p.add_argument("--window-size", type=int, default=4, help="regions per window side in window mode (default 4)")
    p.add_argument("--order", default="row-major", choices=ORDERS)
    p.add_argument("--focus", metavar="Y,X", help="level-0 px point whose windows run first (default: none)")
    p.add_argument("--roi", help="region of interest in level-0 px: 'y0,x0,y1,x1' or 'y,x;y,x;y,x;...' (polygon)")
    p.add_argument("--no-mask", action="store_true", help="run every region (no foreground mask)")
    p.add_argument("--probabilities", action="store_true", help="also store per-class probability maps (uint8)")
    d = RunOptions()
    p.add_argument("--score-threshold", type=float, default=None, metavar="S",
                   help="detections scoring below S are not stored (default: the threshold the model's training "
                        f"chose on its validation windows, else {DEFAULT_SCORE_THRESHOLD})")
    p.add_argument("--max-detections", type=int, default=d.max_detections_per_region, metavar="N",
                   help=f"at most N detections per region (default {d.max_detections_per_region})")
    p.add_argument("--prefetch", type=int, default=d.prefetch, metavar="N",
                   help=f"regions read ahead (default {d.prefetch})")
    p.add_argument("--read-workers", type=int, default=d.read_workers, metavar="N",
                   help=f"threads reading regions (default {d.read_workers})")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the region encoder, warmed up before the first region (minutes on a CPU; "
                   "without a C++ compiler / Triton the run goes on uncompiled and says so)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out (a batch always resumes); done regions whose chunk "
                   "files are missing are redone (regions_repaired)")
    p.add_argument("--verify", action="store_true",
                   help="with --resume: also decode every chunk of the store and redo the regions whose chunks are "
                   "damaged (reads the whole store; `napari-xt verify STORE --deep` only reports)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing store at --out (batch: replace stores made by "
                   "another model or plan; finished matching ones are still skipped)")
    p.add_argument("--json", action="store_true", help="no progress bar; print one JSON summary at the end")
    _batch.add_arguments(p)
    p.set_defaults(run=run, predict_parser=p)


def parse_roi(text: str | None) -> tuple[float, float, float, float] | tuple[tuple[float, float], ...] | None:
    if not text:
        return None
    try:
        if ";" in text:
            points = [tuple(float(v) for v in pt.split(",")) for pt in text.split(";") if pt.strip()]
            if any(len(pt) != 2 for pt in points):
                raise ValueError
            return tuple((pt[0], pt[1]) for pt in points)
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--roi {text!r}: expected numbers like 'y0,x0,y1,x1' or 'y,x;y,x;y,x'") from None
    if len(vals) != 4:
        raise ValueError(f"--roi {text!r}: a rectangle needs 4 numbers y0,x0,y1,x1")
    return vals[0], vals[1], vals[2], vals[3]


def parse_point(text: str | None, flag: str = "--focus") -> tuple[float, float] | None:
    if not text:
        return None
    try:
        y, x = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected two numbers 'y,x' in level-0 pixels") from None
    return y, x


def build_request(args: argparse.Namespace, image: str = "", out: str = "") -> PredictRequest:
    """The request the flags describe; ``image``/``out`` are left empty for a batch template."""
    plan = PlanOptions(mpp=args.mpp, level=args.level, region_size=args.region_size, overlap=args.overlap,
                       context=args.context, window_size=args.window_size, order=args.order, roi=parse_roi(args.roi),
                       use_mask=not args.no_mask, focus=parse_point(args.focus))
    run = RunOptions(device=args.device, precision=args.precision, batch_size=args.batch_size,
                     window_batch=args.window_batch, prefetch=args.prefetch,
                     read_workers=args.read_workers, score_threshold=args.score_threshold,
                     max_detections_per_region=args.max_detections, probabilities=args.probabilities,
                     compile=args.compile, first_region_alone=args.first_region_alone,
                     low_priority=args.low_priority)
    run.validate()
    if getattr(args, "verify", False) and not args.resume and not getattr(args, "out_dir", None):
        raise ValueError("--verify checks the store a run resumes: add --resume")
    return PredictRequest(image=image, model=args.model, out=out, plan=plan, run=run, resume=args.resume,
                          overwrite=args.overwrite, verify=getattr(args, "verify", False))


def run(args: argparse.Namespace) -> int:
    image = _batch.single_image(args)
    if image is None:
        return _batch.run(args, build_request(args))
    return run_single(args, image)


def run_single(args: argparse.Namespace, image: str) -> int:
    from ..app import driver

    request = build_request(args, image=image, out=args.out)
    t0 = time.perf_counter()
    progress = None if args.json else _Progress()
    try:
        summary = driver.predict(request, on_event=progress.on_event if progress else None)
    finally:
        if progress:
            progress.stop()
    result: dict[str, object] = {**summary.to_dict(), "seconds": round(time.perf_counter() - t0, 3)}
    peak = peak_rss_mb()
    if peak is not None:
        result["peak_rss_mb"] = peak
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{summary.regions_done} regions done, {summary.regions_skipped} skipped, "
            f"{summary.regions_failed} failed"
            + (f", {summary.regions_repaired} repaired" if summary.regions_repaired else "")
            + f" in {result['seconds']:.1f} s "
            f"({summary.regions_per_s:.2f} regions/s) -> {summary.store}"
        )
    if summary.regions_failed:
        print(f"napari-xt predict: {summary.regions_failed} region(s) could not be read; "
              "re-run with --resume to retry them", file=sys.stderr)
        return 1
    return 0


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MB; None where the OS has no ``resource`` module (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Progress:
    """A rich progress bar: regions, regions/s, ETA."""

    def start(self, total: int, already_done: int) -> None:
        from ._bar import progress_bar

        self.bar = progress_bar("predict", "{task.fields[rate]} regions/s")
        self.task = self.bar.add_task("regions", total=total, completed=already_done, rate="-")
        self.t0, self.base = time.perf_counter(), already_done
        self.bar.start()

    def on_event(self, event: RunEvent) -> None:
        if isinstance(event, RunStarted):
            self.start(event.n_total, event.n_done)
        elif isinstance(event, RegionDone | RegionFailed):
            rate = (event.n_done - self.base) / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, completed=event.n_done, rate=f"{rate:.2f}")

    def stop(self) -> None:
        if hasattr(self, "bar"):
            self.bar.stop()
