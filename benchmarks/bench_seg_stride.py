"""Segmentation at a coarser output stride (issue 14): is it as accurate, and how much faster?

The segmentation head fuses the encoder's maps FPN-style at stride 4 and predicts class logits there; today those
logits are upsampled bilinearly to every pixel and the engine takes the argmax over classes at full resolution. The
cheaper alternatives measured here, on the shipped demo model (``demo-tissue``) over synthetic tissue with exact
ground truth:

* ``full``: bilinear logits to full resolution, argmax (what the engine does);
* ``s2``:   bilinear logits to stride 2, argmax, labels upsampled x2 (nearest);
* ``s4``:   argmax of the stride-4 logits, labels upsampled x4 (nearest).

For each: agreement with ``full`` (fraction of pixels), mean IoU against the ground truth, and the time of the part
that differs (upsampling + argmax), per region, on this CPU.

Run: ``python benchmarks/bench_seg_stride.py [--regions 12] [--seed 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


def iou(pred: np.ndarray, truth: np.ndarray, k: int) -> float:
    scores = []
    for c in range(k):
        union = ((pred == c) | (truth == c)).sum()
        if union:
            scores.append(((pred == c) & (truth == c)).sum() / union)
    return float(np.mean(scores))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regions", type=int, default=12)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    from napari_xt.engine.normalise import Normaliser
    from napari_xt.model import load_model
    from napari_xt.synthetic import TissueSample

    model = load_model("demo-tissue").eval()
    cfg = model.config
    r = cfg.region_size
    # the demo model's analysis scale: 1 µm/px on a 0.5 µm/px sample = its level-1 (downsample 2) pixels
    ds = max(1, round((cfg.pixel_size or 1.0) / 0.5))
    side = int(np.ceil(np.sqrt(args.regions)))
    sample = TissueSample(side * r * ds, side * r * ds, seed=args.seed)
    norm = Normaliser(np.asarray(cfg.mean, np.float32)[:3], np.asarray(cfg.std, np.float32)[:3], 255.0, 3)
    head = model.heads["segmentation"]
    k = head.num_classes
    stats = {v: {"agree": [], "iou": [], "ms": []} for v in ("full", "s2", "s4")}
    n = 0
    with torch.inference_mode():
        for i in range(side):
            for j in range(side):
                if n >= args.regions:
                    break
                n += 1
                px = sample.render(i * r, j * r, r, r, ds)
                truth = sample.labels(i * r, j * r, r, r, ds)
                x = norm.batch([px])
                feats = model.encode_regions(x)
                ctx, _ = model.step_context(feats, model.init_memory(1), model.region_positions([(0, 0)], feats.grid))
                n_, _, dim = ctx.shape
                ctx_map = ctx.transpose(1, 2).reshape(n_, dim, *feats.grid)
                low = head.classifier(head.fpn(feats.maps, ctx_map))  # [1, K, r/4, r/4]
                s = r // low.shape[-1]
                out = {}
                for name in ("full", "s2", "s4"):
                    t0 = time.perf_counter()
                    for _ in range(3):
                        if name == "full":
                            lab = F.interpolate(low, size=(r, r), mode="bilinear", align_corners=False).argmax(1)
                        elif name == "s2":
                            mid = F.interpolate(low, size=(r // 2, r // 2), mode="bilinear", align_corners=False)
                            lab = mid.argmax(1).repeat_interleave(2, 1).repeat_interleave(2, 2)
                        else:
                            lab = low.argmax(1).repeat_interleave(s, 1).repeat_interleave(s, 2)
                    stats[name]["ms"].append((time.perf_counter() - t0) / 3 * 1000)
                    out[name] = lab[0].numpy().astype(np.uint8)
                for name in out:
                    stats[name]["agree"].append((out[name] == out["full"]).mean())
                    stats[name]["iou"].append(iou(out[name], truth, k))
    print(f"demo-tissue, {n} regions of {r} px at downsample {ds}, stride of the head's logits {s}")
    for name, st in stats.items():
        print(f"  {name:4s}: agreement with full {np.mean(st['agree']):.4f}, mIoU vs ground truth "
              f"{np.mean(st['iou']):.4f}, upsample + argmax {np.median(st['ms']):.1f} ms/region")


if __name__ == "__main__":
    main()
