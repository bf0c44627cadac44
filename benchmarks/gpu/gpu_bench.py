"""GPU benchmark of the engine (issue 14), prepared for a session that has a device; never part of CI.

One command (``benchmarks/gpu/run_gpu_bench.sh``) builds two synthetic inputs on the device machine's local disk
and runs Swin-V2-T + Hyper (bf16 autocast, 512 px regions, 256 px sub-regions, segmentation head) through the one
run driver, reporting per input: regions/s end to end, the bare region-encoder rate on the same GPU (same batch,
same precision), their ratio (goal >= 0.9), GPU utilisation sampled by ``nvidia-smi`` during the run, and peak GPU
memory (goal for the SAR scene: < 16 GB). Results go to ``$OUT/gpu_bench.json`` (and stdout).

* a 50,000 x 50,000 RGB JPEG OME-TIFF pyramid (a rendered 4096 px synthetic tissue block repeated; 512 px tiles);
* a 29,000 x 25,000 two-band float32 SAR scene (a rendered 4096 px synthetic block repeated), global context.

Each run stops after ``--seconds`` (a timer calls ``run.cancel()``), so the whole script fits the device tool's
8-minute call. The tissue input runs once per ``--window-batch`` (default 1 and 4: context windows stepped in
lockstep, issue 14), sharing its seconds. ``--smoke`` shrinks everything to run on a CPU in a minute (how this
script was checked).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tifffile
import torch


def repeated_pyramid(block: np.ndarray, shape: tuple[int, int], path: Path, jpeg: bool) -> Path:
    """An OME-TIFF pyramid of ``shape`` made by repeating ``block`` (y, x, c); JPEG for RGB, raw for float."""
    levels = [shape]
    while max(levels[-1]) > 2048:
        levels.append((-(-levels[-1][0] // 2), -(-levels[-1][1] // 2)))
    t = 512
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tif:
        for i, (h, w) in enumerate(levels):
            b = block[:: 2**i, :: 2**i]
            bh, bw = b.shape[:2]

            def tiles(b=b, h=h, w=w, bh=bh, bw=bw):
                planes = [b] if jpeg else [b[..., c] for c in range(b.shape[2])]
                for p in planes:
                    for y in range(0, h, t):
                        for x in range(0, w, t):
                            ys, xs = (np.arange(y, y + t) % bh), (np.arange(x, x + t) % bw)
                            yield np.ascontiguousarray(p[ys][:, xs])

            kw = dict(tile=(t, t), dtype=block.dtype, maxworkers=os.cpu_count())
            if jpeg:
                kw.update(shape=(h, w, 3), photometric="rgb", compression="jpeg")
            else:
                kw.update(shape=(block.shape[2], h, w), photometric="minisblack", planarconfig="separate")
            if i == 0:
                meta = {"axes": "YXS" if jpeg else "CYX", "PhysicalSizeX": 0.5 if jpeg else 10.0,
                        "PhysicalSizeY": 0.5 if jpeg else 10.0}
                tif.write(tiles(), subifds=len(levels) - 1, metadata=meta, **kw)
            else:
                tif.write(tiles(), subfiletype=1, metadata=None, **kw)
    return path


def sample_gpu(stop: threading.Event, out: list) -> None:
    cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
    while not stop.is_set():
        try:
            util, mem = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.split(",")[:2]
            out.append((float(util), float(mem)))
        except Exception:
            pass
        stop.wait(0.25)


def bench(name: str, image_path: Path, cfg: dict, args, tmp: Path, window_batch: int = 1,
          seconds: float | None = None) -> dict:
    from napari_xt.app.driver import predict, prepare
    from napari_xt.app.request import make_request
    from napari_xt.io import open_image
    from napari_xt.model import XTConfig, build_model

    torch.manual_seed(0)
    model = build_model(XTConfig(**cfg)).eval()
    dev = torch.device(args.device)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    # the bare region encoder on the same device, batch and precision (synchronised timing)
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    x = torch.randn(args.batch, cfg.get("in_chans", 3), 512, 512, device=dev)
    with torch.inference_mode(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
        for _ in range(3):
            model.encode_regions(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds / 4:
            model.encode_regions(x)
            n += args.batch
        if dev.type == "cuda":
            torch.cuda.synchronize()
        bare = n / (time.perf_counter() - t0)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with open_image(image_path) as image:
        req = make_request(str(image_path), name, str(tmp / f"{name}.zarr"), device=args.device, use_mask=False,
                           batch_size=args.batch, precision="auto", overwrite=True, level=0, **args.plan[name],
                           **({"window_batch": window_batch} if window_batch != 1 else {}))
        prepared = prepare(req, model=model, image=image)
        timer = threading.Timer(seconds or args.seconds, prepared.run.cancel)
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=sample_gpu, args=(stop, samples), daemon=True)
        sampler.start()
        timer.start()
        t0 = time.perf_counter()
        summary = predict(req, prepared=prepared)
        seconds = time.perf_counter() - t0
        timer.cancel()
        stop.set()
        stages = {k: round(v, 3) for k, v in prepared.run.stage_seconds.items()}
    e2e = summary.regions_new / seconds
    util = [u for u, _ in samples[2:]]  # the first samples predate the first batch
    return {"input": name, "window_batch": window_batch, "regions": summary.regions_new,
            "regions_total": prepared.run.n_total,
            "seconds": round(seconds, 2), "regions_per_s": round(e2e, 2), "bare_encoder_per_s": round(bare, 2),
            "ratio_e2e_bare": round(e2e / bare, 3), "gpu_util_mean": round(float(np.mean(util)), 1) if util else None,
            "gpu_util_samples": len(util), "stage_seconds": stages,
            "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if dev.type == "cuda" else None,
            "smi_mem_max_mb": max((m for _, m in samples), default=None)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0, help="end-to-end seconds per input (then cancel)")
    p.add_argument("--smoke", action="store_true", help="tiny inputs and models on the CPU (checks the script)")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--window-batch", type=int, nargs="+", default=[1, 4],
                   help="window batches for the tissue input (window context), each run for seconds / their count")
    args = p.parse_args()
    from napari_xt.synthetic import SarSample, TissueSample

    tmp = Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    big, sar_shape, blk = ((50000, 50000), (29000, 25000), 4096) if not args.smoke else ((2048, 2048), (1024, 1280),
                                                                                          512)
    if args.smoke:
        args.device, args.batch, args.seconds = "cpu", 2, 10.0
    t0 = time.perf_counter()
    tissue = repeated_pyramid(np.asarray(TissueSample(blk, blk, seed=1).levels[0]), big, tmp / "tissue.ome.tif",
                              jpeg=True)
    sar = repeated_pyramid(np.asarray(SarSample(blk, blk, seed=1).levels[0]), sar_shape, tmp / "sar.ome.tif",
                           jpeg=False)
    built = time.perf_counter() - t0
    enc = "tiny" if args.smoke else "swinv2_tiny"
    seg = {"segmentation": {"num_classes": 4}}
    base = dict(region_encoder=enc, region_size=512, sub_region_size=256, context_encoder="hyper", heads=seg)
    args.plan = {"tissue": {}, "sar": {"context": "global"}}
    share = args.seconds / len(args.window_batch)
    results = [*(bench("tissue", tissue, base, args, tmp, wb, share) for wb in args.window_batch),
               bench("sar", sar, {**base, "in_chans": 2, "mean": [-20.0, -25.0], "std": [8.0, 8.0],
                                  "input_kind": "sar"}, args, tmp)]
    report = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
              "torch": torch.__version__, "inputs_built_s": round(built, 1), "batch": args.batch, "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "gpu_bench.json").write_text(text)


if __name__ == "__main__":
    main()
