"""Model benchmarks (issue 3): streaming memory does not grow with the window; region encoder speed on CPU.

Run: ``python benchmarks/bench_model.py [--encoders tiny,swinv2_tiny,...] [--context transformer_xl]``
Prints peak RSS of streaming one context window of 4 vs 64 regions (goal: equal within 10 %) and regions/s of each
region encoder (random init) at its native sub-region size, each measured in a fresh process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_isolated

STREAM = """
import time, torch
from napari_xt.model import XTConfig, build_model
torch.manual_seed(0)
cfg = XTConfig(region_encoder="tiny", region_size=512, sub_region_size=128, context_encoder="{context}",
               context_encoder_kwargs={ctx_kwargs}, heads={{"segmentation": {{"num_classes": 4}}}})
model = build_model(cfg).eval()
side = int({n} ** 0.5)
positions = [(r, c) for r in range(side) for c in range(side)]
with torch.inference_mode():
    memory = model.init_memory(1)
    t0 = time.perf_counter()
    for pos in positions:
        x = torch.randn(1, 3, 512, 512)
        out, memory = model.stream_regions(x, [pos], memory)
    _result["seconds"] = time.perf_counter() - t0
_result["regions"] = len(positions)
"""

ENCODER = """
import time, torch
from napari_xt.model import create_region_encoder
enc = create_region_encoder("{name}", in_chans=3, pretrained=False, img_size={size}).eval()
x = torch.randn({batch}, 3, {size}, {size})
with torch.inference_mode():
    enc(x)
    t0 = time.perf_counter(); n = 0
    while time.perf_counter() - t0 < {seconds}:
        enc(x); n += x.shape[0]
    _result["per_s"] = n / (time.perf_counter() - t0)
_result["params_m"] = sum(p.numel() for p in enc.parameters()) / 1e6
"""

NATIVE = {"tiny": 256, "hiera_tiny": 224, "hiera_small": 224, "hiera_base": 224, "convnext_tiny": 256,
          "convnext_small": 256, "convnext_base": 256, "swinv2_tiny": 256, "swinv2_small": 256,
          "swinv2_base": 256, "swinv2_large": 256}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--context", default="transformer_xl")
    p.add_argument("--encoders", default="tiny,convnext_tiny,swinv2_tiny,hiera_tiny")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--mem-len", type=int, default=1024,
                   help="context memory in tokens (1024 = 4 regions of 16 x 16 tokens: memory is full at 4)")
    args = p.parse_args()

    ctx = repr({"mem_len": args.mem_len}) if args.context in ("transformer_xl", "hyper") else "{}"
    small = run_isolated(STREAM.format(context=args.context, n=4, ctx_kwargs=ctx))
    big = run_isolated(STREAM.format(context=args.context, n=64, ctx_kwargs=ctx))
    ratio = big["peak_rss_mb"] / small["peak_rss_mb"]
    print(f"streaming one window ({args.context}, mem_len {args.mem_len}, tiny encoder, 512 px regions):")
    print(f"  4 regions: peak RSS {small['peak_rss_mb']:.0f} MB, {small['regions'] / small['seconds']:.2f} regions/s")
    print(f"  64 regions: peak RSS {big['peak_rss_mb']:.0f} MB, {big['regions'] / big['seconds']:.2f} regions/s")
    print(f"  ratio 64/4 = {ratio:.3f} (goal <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})")
    print("region encoders on CPU (sub-regions/s, batch 4, random init):")
    for name in args.encoders.split(","):
        size = NATIVE.get(name, 256)
        r = run_isolated(ENCODER.format(name=name, size=size, batch=4, seconds=args.seconds))
        print(f"  {name:15s} {size}px  {r['params_m']:7.1f} M params  {r['per_s']:8.2f} sub-regions/s  "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
