"""Pipeline benchmark (issue 14): how fast the engine runs when the model costs nothing, and how much of a real
model's speed survives end to end.

Run: ``python benchmarks/bench_pipeline.py [--size 4096] [--batch 4] [--skip-ratios] [--serial]``

1. **Ceiling**: a real tiny ``XTModel`` whose ``stream_regions`` returns precomputed logits (nothing is computed), run
   through the one run driver (``app.driver.predict``) over a JPEG OME-TIFF pyramid (level 0, no mask, 512 px
   regions, 4 classes). Prints regions/s and the cost of each stage measured alone on the same regions (read+decode,
   normalise, post-process, store write) plus the engine's own per-stage times. Goal >= 100 regions/s on 2 cores.
2. **Ratios** (same run, same process): end-to-end / bare region encoder with Swin-V2-T + Hyper 512/256 (goal >=
   0.95) and end-to-end / whole model with pixels in RAM with the tiny encoder + Hyper (goal >= 0.90).

``--serial`` runs the one-thread reference path (``InferenceRun.pipeline = False``) for a before/after in one checkout.
``--before SRC`` (a folder holding another version's ``napari_xt`` package, e.g. ``git archive HEAD src | tar -x -C
/tmp/before``, then ``--before /tmp/before/src``) measures the tiny + Hyper ratio of both versions in one run, in
subprocesses taking turns, best of ``--repeat-ratios`` each: on a shared machine only ratios measured side by side
mean anything. ``--window-batch N [N ...]`` measures the ratios for each window batch.

The whole-model rate runs the model on a worker thread, as the engine's compute does since issue 14: on this 2-core
machine, loaded by other jobs, torch's small ops (LayerNorm, softmax, elementwise) ran 2-10x slower on the main
thread than on a worker thread (OpenMP barriers of the main thread's team under oversubscription), which made the
main-thread rate a poor baseline. Every number is wall time on whatever machine runs it; record them with the
command in docs/engine.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch


def make_slide(tmp: Path, size: int, width: int | None = None) -> Path:
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    width = width or size
    path = tmp / f"slide{size}x{width}.ome.tif"
    return path if path.exists() else write_ome_tiff(TissueSample(size, width, seed=1), path)


def zero_cost_model(region: int, classes: int, batch: int):
    """The tiny preset whose forward is free: ``stream_regions`` hands back slices of fixed random logits.

    Everything around the model (config, heads, checksums, memory plumbing) is the real ``XTModel``'s, so the driver
    cannot tell; the logits are random so argmax and the codec see realistic (incompressible-ish) label maps.
    """
    from napari_xt.model import XTConfig, build_model

    torch.manual_seed(0)
    model = build_model(XTConfig(region_encoder="tiny", region_size=region, sub_region_size=region // 2,
                                 context_encoder="none", heads={"segmentation": {"num_classes": classes}}))
    # smooth random logits: a label map with blobs (as a real model makes), not salt-and-pepper noise
    coarse = torch.randn(batch, classes, region // 32, region // 32)
    logits = torch.nn.functional.interpolate(coarse, size=(region, region), mode="bilinear").contiguous()

    def stream_regions(x, window_positions, memory, windows=1):
        return {"segmentation": logits[: x.shape[0]]}, memory

    model.stream_regions = stream_regions  # type: ignore[method-assign]
    return model


def run_e2e(model, slide: Path, out: Path, batch: int, serial: bool) -> tuple[float, int, dict]:
    from napari_xt.app.driver import predict, prepare
    from napari_xt.app.request import make_request
    from napari_xt.io import open_image

    with open_image(slide) as image:
        req = make_request(str(slide), "bench", str(out), device="cpu", use_mask=False, batch_size=batch,
                           overwrite=True)
        prepared = prepare(req, model=model, image=image)
        prepared.run.pipeline = not serial
        t0 = time.perf_counter()
        summary = predict(req, prepared=prepared)
        seconds = time.perf_counter() - t0
        stages = dict(getattr(prepared.run, "stage_seconds", {}) or {})
    return seconds, summary.regions_done, stages


def stages_alone(slide: Path, tmp: Path, model, batch: int) -> dict[str, float]:
    """Each stage timed alone over the same regions, in ms per region (one thread, nothing overlapping)."""
    from napari_xt.app.driver import prepare
    from napari_xt.app.request import make_request
    try:
        from napari_xt.engine import postprocess
    except ImportError:
        postprocess = None  # type: ignore[assignment]
    from napari_xt.engine.normalise import Normaliser
    from napari_xt.engine.reader import read_region_pixels
    from napari_xt.io import open_image

    with open_image(slide) as image:
        req = make_request(str(slide), "bench", str(tmp / "alone.zarr"), device="cpu", use_mask=False,
                           batch_size=batch, overwrite=True)
        run = prepare(req, model=model, image=image).run
        regions = [run.plan.regions[i] for w in run.plan.run_order for i in run.plan.windows[w]]
        out: dict[str, float] = {}
        t0 = time.perf_counter()
        pixels = [read_region_pixels(image, run.plan, r) for r in regions]
        out["read+decode"] = time.perf_counter() - t0
        norm = Normaliser.from_config(model.config, image)
        t0 = time.perf_counter()
        for i in range(0, len(pixels), batch):  # as the engine does it: one batch at a time
            norm.batch(pixels[i : i + batch]) if hasattr(norm, "batch") else [norm(p) for p in pixels[i : i + batch]]
        out["normalise"] = time.perf_counter() - t0
        seg = model.stream_regions(torch.zeros(batch, 3, 1, 1), [], None)[0]["segmentation"]
        t0 = time.perf_counter()
        labels = []
        for k, r in enumerate(regions):
            cy0, cx0 = r.core[0] - r.box[0], r.core[1] - r.box[1]
            crop = (cy0, cx0, r.core[2] - r.box[0], r.core[3] - r.box[1])
            if postprocess is None:  # the engine before issue 14
                part = seg[k % batch, :, crop[0]:crop[2], crop[1]:crop[3]].float()
                labels.append(part.argmax(0).cpu().numpy().astype(np.uint8))
            else:
                labels.append(postprocess.labels_from_logits(seg, k % batch, crop)[0])
        out["argmax"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r, lab in zip(regions, labels):
            run.store.write_region(r.id, r.core, lab)
        out["store write"] = time.perf_counter() - t0
    return {k: 1000 * v / len(regions) for k, v in out.items()}


ENCODERS = {"swinv2_tiny": "bare encoder", "tiny": "whole model in RAM"}


def ratios(tmp: Path, batch: int, serial: bool, repeat: int, encoders: list[str], window_batch: int = 1,
           regions: int = 8, window_size: int = 4, quick_first: bool = False, base_kind: str | None = None) -> None:
    """Each rate is the best of ``repeat`` tries, base and end-to-end interleaved: on a shared 2-core machine one
    try can lose a third of its CPU to a neighbour, and the best try is the least disturbed one. ``base_kind``
    overrides the goal's base (``ENCODERS``): "whole model in RAM" for Swin-V2-T shows what its context and head
    cost next to the encoder, i.e. the best end-to-end / bare-encoder ratio any pipeline could reach."""
    slide = make_slide(tmp, 1024, 256 * regions)  # 2 rows of regions of 512 px
    note = f", window size {window_size}, window batch {window_batch}" if (window_batch, window_size) != (1, 4) else ""
    for encoder in encoders:
        what = base_kind or ENCODERS[encoder]
        n, base, e2e = _ratio(slide, tmp, encoder, what, batch, serial, repeat, window_batch, window_size,
                              quick_first)
        _print_ratio(encoder, what, n, base, e2e, note + ", first region alone" if quick_first else note)


def _print_ratio(encoder: str, what: str, n: int, base: float, e2e: float, note: str = "") -> None:
    goal = 0.95 if what == "bare encoder" else 0.90
    r = e2e / base
    print(f"   {encoder:12s} + hyper, {n} regions of 512 px{note}: {what} {base:6.2f}/s, end-to-end {e2e:6.2f}/s, "
          f"ratio {r:.3f} (goal >= {goal}: {'met' if r >= goal else 'NOT met'})")


def _on_thread(fn):
    """``fn()`` on a fresh worker thread, as the engine runs its compute (see the module docstring)."""
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def before_after(tmp: Path, batch: int, repeat: int, before_src: str, encoder: str = "tiny") -> None:
    """The tiny + Hyper ratio of another version (``before_src`` on ``PYTHONPATH``) and of this checkout, measured
    in subprocesses taking turns (one try each per round), best of ``repeat``."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    best: dict[str, tuple[int, float, float]] = {}
    for _ in range(repeat):
        for name, src in (("before", before_src), ("after", here)):
            env = {**os.environ, "PYTHONPATH": src}
            (tmp / name).mkdir(exist_ok=True)  # each version its own stores (their formats may differ)
            out = subprocess.run([sys.executable, __file__, "--ratio-json", encoder, "--tmp", str(tmp / name),
                                  "--batch", str(batch)], env=env, capture_output=True, text=True, check=True).stdout
            n, base, e2e = json.loads(out.strip().splitlines()[-1])
            old = best.get(name)
            best[name] = (n, max(base, old[1] if old else 0.0), max(e2e, old[2] if old else 0.0))
    for name in ("before", "after"):
        n, base, e2e = best[name]
        _print_ratio(encoder, ENCODERS[encoder], n, base, e2e, f" [{name}]")


def _ratio(slide: Path, tmp: Path, encoder: str, what: str, batch: int, serial: bool,
           repeat: int, window_batch: int = 1, window_size: int = 4,
           quick_first: bool = False) -> tuple[int, float, float]:
    from napari_xt.app.driver import predict, prepare
    from napari_xt.app.request import make_request
    from napari_xt.engine.normalise import Normaliser
    from napari_xt.engine.reader import read_region_pixels
    from napari_xt.io import open_image
    from napari_xt.model import XTConfig, build_model

    try:
        from napari_xt.engine.allocator import reuse_freed_memory
    except ImportError:  # a version from before the allocator policy (--before)
        from contextlib import nullcontext as reuse_freed_memory  # type: ignore[assignment]

    torch.manual_seed(0)
    model = build_model(XTConfig(region_encoder=encoder, region_size=512, sub_region_size=256,
                                 context_encoder="hyper", heads={"segmentation": {"num_classes": 4}})).eval()
    extra = {"window_batch": window_batch} if window_batch != 1 else {}  # a version before issue 14 lacks it
    with open_image(slide) as image:
        req = make_request(str(slide), encoder, str(tmp / f"{encoder}.zarr"), device="cpu", use_mask=False,
                           batch_size=batch, overwrite=True, window_size=window_size, **extra)
        plan = prepare(req, model=model, image=image).run.plan
        norm = Normaliser.from_config(model.config, image)
        windows = [[plan.regions[i] for i in plan.windows[w]] for w in plan.run_order]
        pixels = {r.id: norm(read_region_pixels(image, plan, r)) for w in windows for r in w}
        n = len(pixels)

        def batches(regs):
            for i in range(0, len(regs), batch):
                part = regs[i : i + batch]
                yield part, torch.from_numpy(np.stack([pixels[r.id] for r in part])).permute(0, 3, 1, 2).contiguous()

        @torch.inference_mode()
        def base_rate() -> float:
            with reuse_freed_memory():  # the allocator policy of the engine's CPU runs: the base at its best
                return _base_rate()

        def _base_rate() -> float:
            t0 = time.perf_counter()
            for regs in windows:
                memory = model.init_memory(1)
                for part, x in batches(regs):
                    if what == "bare encoder":
                        model.encode_regions(x)
                    else:
                        _, memory = model.stream_regions(x, [r.window_pos for r in part], memory)
            return n / (time.perf_counter() - t0)

        with torch.inference_mode():
            model.encode_regions(next(batches(windows[0]))[1][:1])  # warm-up
        base, e2e = 0.0, 0.0
        for _ in range(repeat):
            base = max(base, _on_thread(base_rate))
            prepared = prepare(req, model=model, image=image)
            prepared.run.pipeline = not serial
            prepared.run.quick_first = quick_first  # engine knob (a version without it ignores the attribute)
            t0 = time.perf_counter()
            done = predict(req, prepared=prepared).regions_done
            e2e = max(e2e, done / (time.perf_counter() - t0))
    return n, base, e2e


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096, help="slide side in px (4096: 64 regions of 512 px)")
    p.add_argument("--region", type=int, default=512)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3, help="ceiling runs; the best is reported")
    p.add_argument("--repeat-ratios", type=int, default=2, help="tries per ratio rate; the best is kept")
    p.add_argument("--serial", action="store_true", help="the one-thread reference path (before/after)")
    p.add_argument("--skip-ratios", action="store_true")
    p.add_argument("--skip-stages", action="store_true")
    p.add_argument("--skip-ceiling", action="store_true")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS),
                   help="which ratios to measure")
    p.add_argument("--window-batch", nargs="+", type=int, default=[1], help="window batch(es) for the ratios")
    p.add_argument("--base", choices=sorted(set(ENCODERS.values())),
                   help="the ratios' base for every encoder (default: each goal's own, see ENCODERS)")
    p.add_argument("--ratio-regions", type=int, default=8, help="regions of 512 px in the ratios' slide (even)")
    p.add_argument("--ratio-window-size", type=int, default=4, help="window size in the ratios' runs")
    p.add_argument("--first-region-alone", action="store_true",
                   help="ratios with the dock's one-region first step (RunOptions.first_region_alone); default: the "
                   "CLI's full first batch")
    p.add_argument("--before", metavar="SRC", help="also measure another version's tiny + Hyper ratio (see above)")
    p.add_argument("--ratio-json", metavar="ENCODER", help=argparse.SUPPRESS)  # one try, for --before
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ratio_json:
        tmp = Path(args.tmp)
        n, base, e2e = _ratio(make_slide(tmp, 1024, 2048), tmp, args.ratio_json, ENCODERS[args.ratio_json],
                              args.batch, False, 1)
        print(json.dumps([n, base, e2e]))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    if args.before:
        print(f"ratios before/after, subprocesses taking turns, best of {args.repeat_ratios}")
        before_after(tmp, args.batch, args.repeat_ratios, args.before)
        return
    slide = make_slide(tmp, args.size)
    model = zero_cost_model(args.region, args.classes, args.batch)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads; slide {args.size}^2 JPEG OME-TIFF, "
          f"{args.region} px regions, batch {args.batch}, {'serial' if args.serial else 'staged'} pipeline")
    best = None
    for _ in range(0 if args.skip_ceiling else args.repeat):
        seconds, n, stages = run_e2e(model, slide, tmp / "ceiling.zarr", args.batch, args.serial)
        if best is None or seconds < best[0]:
            best = (seconds, n, stages)
    if best is not None:
        ceiling(best, args, slide, tmp, model)
    if not args.skip_ratios:
        print(f"2. ratios (Hyper context, segmentation head, batch {args.batch})")
        for wb in args.window_batch:
            ratios(tmp, args.batch, args.serial, args.repeat_ratios, args.encoders, wb, args.ratio_regions,
                   args.ratio_window_size, args.first_region_alone, args.base)


def ceiling(best, args, slide: Path, tmp: Path, model) -> None:
    seconds, n, stages = best
    rate = n / seconds
    print(f"1. ceiling (zero-cost model): {n} regions in {seconds:.2f} s = {rate:.1f} regions/s, "
          f"{1000 * seconds / n:.1f} ms/region (goal >= 100/s: {'met' if rate >= 100 else 'NOT met'})")
    if stages:
        print("   engine stage busy time, ms/region: " + ", ".join(
            f"{k} {1000 * v / n:.1f}" for k, v in stages.items()))
    if not args.skip_stages:
        alone = stages_alone(slide, tmp, model, args.batch)
        print("   each stage alone, ms/region: " + ", ".join(f"{k} {v:.1f}" for k, v in alone.items()))


if __name__ == "__main__":
    main()
