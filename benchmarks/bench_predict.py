"""Engine benchmarks (issue 4): flat memory over image size, the naive whole-image curve, end-to-end throughput.

Run: ``python benchmarks/bench_predict.py [--skip-naive] [--skip-throughput] [--big 65536 --small 8192]``

1. Peak RSS of ``predict`` on a lazily rendered 64k x 64k synthetic slide vs an 8k x 8k one, same model (tiny
   encoder + Transformer-XL, global context, 4 µm/px analysis level): goal ratio <= 1.1.
2. Peak RSS of a naive whole-image forward (the same model, all tokens in one sequence, no streaming) at growing
   sizes: the curve xT exists to avoid.
3. End-to-end regions/s (read + normalise + encode + context + heads + store) vs the bare region encoder on the same
   regions in the same process: goal >= 0.95. Tiny encoder and Swin-V2-T, on a real tiled OME-TIFF.
Every measurement of (1) and (2) runs in a fresh process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_isolated

MODEL = """
import torch
from napari_xt.model import XTConfig, build_model
torch.manual_seed(0)
model = build_model(XTConfig(region_encoder="{encoder}", region_size={region}, sub_region_size={sub},
                    context_encoder="transformer_xl", context_encoder_kwargs={{"mem_len": {mem_len}}},
                    heads={{"segmentation": {{"num_classes": 4}}}}, pixel_size={mpp})).eval()
"""

FLAT = MODEL + """
import tempfile, time
from napari_xt.app.driver import predict, prepare
from napari_xt.app.request import make_request
from napari_xt.synthetic import TissueSample
from napari_xt.synthetic.image import synthetic_image
image = synthetic_image(TissueSample({size}, {size}))
out = tempfile.mkdtemp() + "/store.zarr"
req = make_request(image.path, "bench", out, device="cpu", context="global", batch_size=4)
t0 = time.perf_counter()
summary = predict(req, prepared=prepare(req, model=model, image=image))
_result.update(summary.to_dict(), wall=time.perf_counter() - t0)
"""

NAIVE = MODEL + """
import time
with torch.inference_mode():
    x = torch.randn(1, 3, {size}, {size})
    t0 = time.perf_counter()
    model(x)
    _result["seconds"] = time.perf_counter() - t0
"""


def flat_memory(args) -> None:
    # mem_len 256 tokens = 4 regions: both images fill the memory, so both reach the steady state
    kw = dict(encoder="tiny", region=256, sub=128, mem_len=256, mpp=4.0)
    small = run_isolated(FLAT.format(size=args.small, **kw))
    big = run_isolated(FLAT.format(size=args.big, **kw))
    ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    print("1. memory over image size (tiny + transformer_xl mem_len 256, global context, 4 um/px, 256 px regions)")
    for r, s in ((small, args.small), (big, args.big)):
        print(f"   {s:>6} x {s:<6} {r['regions_done']:5d} regions  {r['wall']:7.1f} s  "
              f"{r['regions_per_s']:6.2f} regions/s  peak RSS {r['peak_rss_mb']:7.0f} MB")
    print(f"   ratio big/small = {ratio:.3f} (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")


def naive_curve(args) -> None:
    print("2. naive whole-image forward of the same model (one sequence, no streaming)")
    for size in args.naive_sizes:
        try:
            tokens = (size // 32) ** 2  # the whole image's tokens in one sequence (tiny encoder: stride 32)
            r = run_isolated(NAIVE.format(size=size, encoder="tiny", region=256, sub=128, mem_len=tokens, mpp=None),
                             timeout=600)
            print(f"   {size:>6} x {size:<6} peak RSS {r['peak_rss_mb']:8.0f} MB  {r['seconds']:7.2f} s")
        except Exception as err:  # OOM-kill or timeout is the point of the curve
            print(f"   {size:>6} x {size:<6} failed: {str(err).splitlines()[-1][:120]}")
            break


def throughput(args) -> None:
    import tempfile
    import time

    import numpy as np
    import torch

    from napari_xt.app.driver import predict, prepare
    from napari_xt.app.request import make_request
    from napari_xt.engine.normalise import Normaliser
    from napari_xt.engine.reader import read_region_pixels
    from napari_xt.io import open_image
    from napari_xt.model import XTConfig, build_model
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    tmp = Path(tempfile.mkdtemp())
    print("3. throughput on JPEG OME-TIFFs (tiny: 4096 px, Swin-V2-T: 2048 px), level 0, no mask, batch 4, "
          "transformer_xl context, segmentation head")
    for encoder, region, sub, size in (("tiny", 1024, 256, args.tp_size), ("swinv2_tiny", 512, 256, 2048)):
        slide = write_ome_tiff(TissueSample(size, size, seed=1), tmp / f"slide{size}.ome.tif") if not (
            tmp / f"slide{size}.ome.tif").exists() else tmp / f"slide{size}.ome.tif"
        torch.manual_seed(0)
        model = build_model(XTConfig(region_encoder=encoder, region_size=region, sub_region_size=sub,
                                     context_encoder="transformer_xl", heads={"segmentation": {"num_classes": 4}}))
        model.eval()
        with open_image(slide) as image:
            req = make_request(str(slide), encoder, str(tmp / f"{encoder}.zarr"), device="cpu", use_mask=False,
                               batch_size=4)
            prepared = prepare(req, model=model, image=image)
            run = prepared.run
            norm = Normaliser.from_config(model.config, image)
            regions = [run.plan.regions[i] for w in run.plan.run_order for i in run.plan.windows[w]]
            pixels = [norm(read_region_pixels(image, run.plan, r)) for r in regions]
            batches = [torch.from_numpy(np.stack(pixels[i : i + 4])).permute(0, 3, 1, 2).contiguous()
                       for i in range(0, len(pixels), 4)]
            with torch.inference_mode():
                model.encode_regions(batches[0][:1])  # warm-up
                t0 = time.perf_counter()
                for x in batches:
                    model.encode_regions(x)
                bare = len(pixels) / (time.perf_counter() - t0)
                t0 = time.perf_counter()
                for window in run.plan.run_order:  # the whole model (encoder + context + heads), pixels in RAM
                    memory = model.init_memory(1)
                    regs = [run.plan.regions[i] for i in run.plan.windows[window]]
                    for i in range(0, len(regs), 4):
                        idx = [regions.index(r) for r in regs[i : i + 4]]
                        x = torch.from_numpy(np.stack([pixels[j] for j in idx])).permute(0, 3, 1, 2).contiguous()
                        _, memory = model.stream_regions(x, [r.window_pos for r in regs[i : i + 4]], memory)
                compute = len(pixels) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            summary = predict(req, prepared=prepared)
            e2e = summary.regions_done / (time.perf_counter() - t0)
        print(f"   {encoder:12s} {len(regions):3d} regions of {region} px: bare encoder {bare:6.2f}/s, whole model "
              f"(in RAM) {compute:6.2f}/s, end-to-end {e2e:6.2f}/s")
        met = "met" if e2e / bare >= 0.95 else "NOT met"
        print(f"      end-to-end / bare encoder = {e2e / bare:.3f} (goal >= 0.95: {met}); "
              f"end-to-end / whole model = {e2e / compute:.3f} (I/O, normalising and store writes hidden when ~1)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--big", type=int, default=65536)
    p.add_argument("--small", type=int, default=8192)
    p.add_argument("--naive-sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    p.add_argument("--tp-size", type=int, default=4096, help="slide size for the throughput test")
    p.add_argument("--skip-flat", action="store_true")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    if not args.skip_flat:
        flat_memory(args)
    if not args.skip_naive:
        naive_curve(args)
    if not args.skip_throughput:
        throughput(args)


if __name__ == "__main__":
    main()
