"""``napari-xt predict A B C... --out-dir DIR``: the batch form of predict (driver: :mod:`napari_xt.app.batch`).

Only argument handling and display live here: which form the user meant, the dashboard link, a progress bar of
images, one line per finished image and the exit code. Exit 0 when every image is done, skipped or resumed; 1 when
any failed (the manifest says which and why); 2 for a form that cannot work (``--out`` with several images).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..app.request import PredictRequest


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batch (several images, globs, @list.txt, or --out-dir)")
    g.add_argument("--out-dir", metavar="DIR",
                   help="folder for one <image>.xt.zarr store per image plus manifest.json/.csv; "
                   "re-running skips finished images and resumes partial ones")
    g.add_argument("--scheduler", default="local", metavar="local|ADDRESS",
                   help="'local' (default: a dask LocalCluster on this machine) or "
                   "the address of a running dask scheduler, e.g. tcp://head-node:8786")
    g.add_argument("--workers", type=int, metavar="N",
                   help="LocalCluster worker processes (default: one per CUDA GPU when "
                   "running on GPUs, else min(2, cores/2))")
    g.add_argument("--threads-per-worker", type=int, default=1, metavar="T",
                   help="threads per LocalCluster worker, also torch's thread count there (default 1)")


def single_image(args: argparse.Namespace) -> str | None:
    """The one image of the classic ``--out STORE`` form, or None for a batch; usage errors exit 2 here."""
    from ..app._inputs import expand_inputs, is_glob, is_list_file

    parser = args.predict_parser
    if args.out and args.out_dir:
        parser.error("--out (one store) and --out-dir (a batch) exclude each other")
    images = list(args.image)
    if args.out_dir:
        return None
    if len(images) > 1:
        what = "--out names one result store" if args.out else "several images need --out-dir DIR"
        parser.error(f"{what}, but {len(images)} images were given; use --out-dir DIR for a batch")
    if not args.out:
        parser.error("--out STORE (one image) or --out-dir DIR (a batch) is required")
    if is_list_file(images[0]) or is_glob(images[0]):
        found = expand_inputs(images)
        if len(found) > 1:
            parser.error(f"--out names one result store, but {images[0]} gives {len(found)} images; use --out-dir")
        if found and found[0].error is None:
            return found[0].path
    return images[0]


def run(args: argparse.Namespace, template: PredictRequest) -> int:
    from ..app._inputs import expand_inputs
    from ..app.batch import run_batch

    if args.workers is not None and args.workers < 1:
        args.predict_parser.error("--workers must be at least 1")
    if args.threads_per_worker < 1:
        args.predict_parser.error("--threads-per-worker must be at least 1")
    items = expand_inputs(args.image)
    if not items:
        raise ValueError(f"no images in {' '.join(args.image)} (empty list file?)")
    show = _Display(quiet=args.json, local=args.scheduler == "local")
    try:
        result = run_batch(items, args.out_dir, template, scheduler=args.scheduler, workers=args.workers,
                           threads_per_worker=args.threads_per_worker, overwrite=args.overwrite,
                           on_start=show.start, on_record=show.record,
                           describe=_manifest_words)
    finally:
        show.stop()
    summary = result.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        counts = ", ".join(f"{summary[k]} {k}" for k in ("done", "skipped", "resumed", "failed", "cancelled")
                           if summary[k])
        print(f"{summary['images']} images ({counts}) in {summary['seconds']:.1f} s on {summary['workers']} "
              f"worker(s) -> {summary['manifest']}")
    if not result.ok:
        print(f"napari-xt predict: {summary['failed'] + summary['cancelled']} of {summary['images']} images did "
              f"not finish; see "
              f"{summary['manifest']} (fix them and re-run the same command: finished images are skipped)",
              file=sys.stderr)
        return 1
    return 0


def _manifest_words(err: BaseException) -> str:
    """Errors worded for the manifest of a batch (its flags: --out-dir, --overwrite)."""
    from ._errors import describe

    return describe(err, out_flag="--out-dir")


class _Display:
    """Dashboard link, a rich bar of images (done / total, ETA) and one line per finished image; silent for --json."""

    def __init__(self, quiet: bool, local: bool):
        self.quiet, self.local = quiet, local
        self.bar: Any = None

    def start(self, client, total: int) -> None:
        if self.quiet:
            return
        from ._bar import progress_bar

        link = client.dashboard_link
        if self.local and importlib.util.find_spec("bokeh") is None:
            link += "  (shows a page asking for bokeh: pip install 'bokeh>=3.1' for the live dashboard)"
        print(f"dask dashboard: {link}", flush=True)
        self.bar = progress_bar("images", "{task.fields[failed]} failed")
        self.task = self.bar.add_task("images", total=total, failed=0)
        self.failed, self.t0 = 0, time.perf_counter()
        self.bar.start()

    def record(self, r: dict) -> None:
        if self.quiet:
            return
        regions = f"{r['regions_done']}/{r['regions_total']} regions" if r["regions_total"] else ""
        line = f"{r['status']:<9} {r['image']}  {r['error'] or regions}  {r['seconds']:.1f} s"
        if self.bar is None:  # nothing was submitted: every input failed before the cluster started
            print(line)
            return
        self.failed += r["status"] == "failed"
        self.bar.update(self.task, advance=1, failed=self.failed)
        self.bar.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
