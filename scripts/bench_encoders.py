"""Time region encoders on this machine (random init, no downloads): ms per sub-region, batch of 4, eval, fp32.

    .venv/bin/python scripts/bench_encoders.py [--threads 2] [--device cpu] [NAME ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from napari_xt.model import create_region_encoder

DEFAULT = [("tiny", 256), ("swinv2_tiny", 256), ("convnext_tiny", 224), ("lunit-vits8", 224),
           ("dinov2-vits14", 224), ("dinov2-vitb14", 224), ("uni", 224), ("virchow2", 224)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("names", nargs="*")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    todo = [(n, s) for n, s in DEFAULT if not args.names or n in args.names]
    for name, size in todo:
        enc = create_region_encoder(name, img_size=size).eval().to(args.device)
        x = torch.randn(args.batch, 3, size, size, device=args.device)
        params = sum(p.numel() for p in enc.parameters()) / 1e6
        with torch.inference_mode():
            enc(x)
            runs, t0 = 0, time.perf_counter()
            while runs < 3 or time.perf_counter() - t0 < 2.0:
                enc(x)
                runs += 1
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / runs / args.batch * 1000
        print(f"{name:16s} {size:4d} px  {params:7.1f} M params  {ms:8.1f} ms/sub-region", flush=True)
        del enc


if __name__ == "__main__":
    main()
