"""Task heads on top of the context encoder, and the detection decoding the engine needs.

Every head builder is registered as ``builder(in_dim, encoder_channels, encoder_reductions, **options)`` where
``in_dim`` is the context encoder's ``out_dim`` and the two lists describe the region encoder's stages. A head is
either *window-level* (``level = "window"``: classification reads the context memory once per window) or
*region-level* (``level = "region"``: segmentation/detection decode each region from its stitched multi-scale maps
plus its context-enriched tokens). Region-level heads fuse scales FPN-style because the tokens alone (stride 32) are
far too coarse for pixel outputs, while the encoder's early stages carry the fine detail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..objects import same_object_keep
from .registry import register_head


class Head(nn.Module):
    level: str = "region"


# -- classification ------------------------------------------------------------------------------------------------
class ClassificationHead(Head):
    """``fc(norm(x))`` on a window embedding ``[B, D]``.

    ``pool="memory"`` (default, as in xT) uses the context encoder's ``summarize(memory)``; ``pool="tokens"`` uses the
    mean of all context-enriched tokens of the window. The ``norm``/``fc`` names match the importer's mapping of the
    released ``decoder.cls.0``/``decoder.cls.1``.
    """

    level = "window"

    def __init__(self, in_dim: int, num_classes: int, pool: str = "memory", dropout: float = 0.0) -> None:
        super().__init__()
        if pool not in ("memory", "tokens"):
            raise ValueError(f"classification pool must be 'memory' or 'tokens', got {pool!r}")
        self.pool, self.num_classes = pool, int(num_classes)
        self.norm = nn.LayerNorm(in_dim)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.norm(x)))


# -- dense heads -----------------------------------------------------------------------------------------------------
class FPNFuse(nn.Module):
    """Project the context tokens (as a map) and every encoder stage to ``dim``; fuse top-down to ``out_stride``."""

    def __init__(self, in_dim: int, channels: Sequence[int], reductions: Sequence[int], dim: int,
                 out_stride: int | None = None) -> None:
        super().__init__()
        out_stride = out_stride or min(reductions)
        self.used = [i for i, r in enumerate(reductions) if r >= out_stride]
        if not self.used:
            raise ValueError(f"no encoder stage at stride >= {out_stride}")
        self.out_stride = min(reductions[i] for i in self.used)
        self.context_proj = nn.Conv2d(in_dim, dim, 1)
        self.laterals = nn.ModuleList([nn.Conv2d(channels[i], dim, 1) for i in self.used])
        self.fuse = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GroupNorm(1, dim), nn.GELU())

    def forward(self, maps: Sequence[torch.Tensor], context_map: torch.Tensor) -> torch.Tensor:
        feats = [maps[i] for i in self.used]
        x = self.laterals[-1](feats[-1])
        ctx = self.context_proj(context_map)
        if ctx.shape[-2:] != x.shape[-2:]:
            ctx = F.interpolate(ctx, size=x.shape[-2:], mode="bilinear", align_corners=False)
        x = x + ctx
        for lateral, f in zip(reversed(self.laterals[:-1]), reversed(feats[:-1])):
            x = F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False) + lateral(f)
        return self.fuse(x)


class SegmentationHead(Head):
    """Per-pixel class logits at full region resolution from the FPN fusion at stride 4 (bilinear upsampling)."""

    def __init__(self, in_dim: int, encoder_channels: Sequence[int], encoder_reductions: Sequence[int],
                 num_classes: int, dim: int = 64) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.fpn = FPNFuse(in_dim, encoder_channels, encoder_reductions, dim)
        self.classifier = nn.Conv2d(dim, self.num_classes, 1)

    def forward(self, maps: Sequence[torch.Tensor], context_map: torch.Tensor,
                out_size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.classifier(self.fpn(maps, context_map))
        if out_size is None:
            out_size = (logits.shape[-2] * self.fpn.out_stride, logits.shape[-1] * self.fpn.out_stride)
        return F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=False)


class DetectionHead(Head):
    """CenterNet-style outputs at the finest encoder stride (4).

    ``heatmap`` ``[N, K, h, w]`` centre logits per class (sigmoid), ``size`` ``[N, 2, h, w]`` box (height, width) in
    input px, ``offset`` ``[N, 2, h, w]`` sub-cell centre offset (y, x) in cells. The heat-map bias starts at the
    CenterNet prior (p = 0.1) so an untrained head does not flood the decoder with peaks.
    """

    def __init__(self, in_dim: int, encoder_channels: Sequence[int], encoder_reductions: Sequence[int],
                 num_classes: int, dim: int = 64, prior: float = 0.1) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.fpn = FPNFuse(in_dim, encoder_channels, encoder_reductions, dim)
        self.stride = self.fpn.out_stride

        def branch(out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, out, 1))

        self.heatmap = branch(self.num_classes)
        self.size = branch(2)
        self.offset = branch(2)
        last = self.heatmap[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.constant_(last.bias, -math.log((1 - prior) / prior))

    def forward(self, maps: Sequence[torch.Tensor], context_map: torch.Tensor,
                out_size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        x = self.fpn(maps, context_map)
        return {"heatmap": self.heatmap(x), "size": self.size(x), "offset": self.offset(x)}


@register_head("classification")
def classification(in_dim: int, encoder_channels: Sequence[int] = (), encoder_reductions: Sequence[int] = (),
                   num_classes: int = 2, **kwargs: Any) -> ClassificationHead:
    """Window classification: options ``num_classes``, ``pool`` ("memory" | "tokens"), ``dropout``."""
    return ClassificationHead(in_dim, num_classes, **kwargs)


@register_head("segmentation")
def segmentation(in_dim: int, encoder_channels: Sequence[int], encoder_reductions: Sequence[int],
                 num_classes: int = 2, **kwargs: Any) -> SegmentationHead:
    """Semantic segmentation: options ``num_classes``, ``dim`` (FPN width, 64)."""
    return SegmentationHead(in_dim, encoder_channels, encoder_reductions, num_classes, **kwargs)


@register_head("detection")
def detection(in_dim: int, encoder_channels: Sequence[int], encoder_reductions: Sequence[int],
              num_classes: int = 1, **kwargs: Any) -> DetectionHead:
    """CenterNet detection: options ``num_classes``, ``dim`` (64), ``prior`` (0.1)."""
    return DetectionHead(in_dim, encoder_channels, encoder_reductions, num_classes, **kwargs)


# -- decoding --------------------------------------------------------------------------------------------------------
DET_KEYS = ("y", "x", "h", "w", "cls", "score")


def empty_detections() -> dict[str, np.ndarray]:
    out = {k: np.zeros(0, np.float32) for k in DET_KEYS}
    out["cls"] = np.zeros(0, np.int64)
    out["class"] = out["cls"]
    return out


@torch.no_grad()
def decode_detections(
    outputs: dict[str, torch.Tensor], region: int | Sequence[int] = 0, score_threshold: float = 0.3,
    max_detections: int = 100, *, stride: float = 4, max_per_region: int | None = None,
) -> dict[str, np.ndarray]:
    """Peaks of one region's heat map -> numpy arrays ``y, x, h, w, cls, score`` (``class`` is an alias of ``cls``).

    ``region`` is either the index of the region in a batched output (coordinates are then region-local px, as the
    engine wants) or the region's box ``(y0, x0, ...)`` in image px for a single-region output (coordinates are then
    image px). Peaks are 3x3 local maxima of the sigmoid heat map; at most ``max_detections`` (alias
    ``max_per_region``) are kept, best first.
    """
    if max_per_region is not None:
        max_detections = max_per_region
    if isinstance(region, (int, np.integer)):
        index, (oy, ox) = int(region), (0, 0)
    else:
        index, (oy, ox) = 0, (int(region[0]), int(region[1]))
    heat, size, offset = outputs["heatmap"], outputs["size"], outputs["offset"]
    if heat.dim() == 4:
        heat, size, offset = heat[index], size[index], offset[index]
    prob = heat.float().sigmoid()
    peaks = prob == F.max_pool2d(prob[None], 3, stride=1, padding=1)[0]
    scores = (prob * peaks).flatten()
    k = min(int(max_detections), scores.numel())
    if k <= 0:
        return empty_detections()
    top, idx = scores.topk(k)
    keep = top >= score_threshold
    top, idx = top[keep], idx[keep]
    h, w = prob.shape[-2:]
    cls, cell = idx // (h * w), idx % (h * w)
    cy, cx = cell // w, cell % w
    off, sz = offset.float(), size.float()
    y = (cy + off[0, cy, cx]) * stride + oy
    x = (cx + off[1, cy, cx]) * stride + ox
    out: dict[str, np.ndarray] = {
        "y": y.cpu().numpy().astype(np.float32),
        "x": x.cpu().numpy().astype(np.float32),
        "h": sz[0, cy, cx].clamp_min(0).cpu().numpy().astype(np.float32),
        "w": sz[1, cy, cx].clamp_min(0).cpu().numpy().astype(np.float32),
        "cls": cls.cpu().numpy().astype(np.int64),
        "score": top.cpu().numpy().astype(np.float32),
    }
    # a 3 x 3 peak window is 12 px at stride 4: a 40 px tree crown's bumpy heat map has several peaks (108 extra
    # detections among 307 on the held-out NEON rows); peaks within half the measured object size are one object
    distinct = same_object_keep(out["y"], out["x"], out["h"], out["w"], out["cls"], out["score"])
    if not distinct.all():
        out = {k: v[distinct] for k, v in out.items()}
    out["class"] = out["cls"]
    return out


def concat_detections(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not parts:
        return empty_detections()
    out = {k: np.concatenate([p[k] for p in parts]) for k in DET_KEYS}
    out["class"] = out["cls"]
    return out


def deduplicate_across_borders(dets: dict[str, np.ndarray], radius: float) -> dict[str, np.ndarray]:
    """Greedy same-class suppression: drop a detection within ``radius`` px of a higher-scoring one.

    Meant for objects seen twice where regions overlap. Uses a hash grid of ``radius``-sized cells, so the cost is
    linear in the number of detections for reasonable densities.
    """
    n = len(dets["score"])
    if n == 0 or radius <= 0:
        return dets
    order = np.argsort(-dets["score"], kind="stable")
    ys, xs, cs = dets["y"], dets["x"], dets["cls"]
    r2 = float(radius) ** 2
    cells: dict[tuple[int, int, int], list[int]] = {}
    keep = np.zeros(n, bool)
    for i in order:
        gy, gx = int(ys[i] // radius), int(xs[i] // radius)
        clash = False
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                for j in cells.get((int(cs[i]), gy + dy, gx + dx), ()):
                    if (ys[i] - ys[j]) ** 2 + (xs[i] - xs[j]) ** 2 <= r2:
                        clash = True
                        break
                if clash:
                    break
            if clash:
                break
        if not clash:
            keep[i] = True
            cells.setdefault((int(cs[i]), gy, gx), []).append(i)
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-dets["score"][idx], kind="stable")]
    out = {k: v[idx] for k, v in dets.items() if k != "class"}
    out["class"] = out["cls"]
    return out


__all__ = [
    "ClassificationHead", "SegmentationHead", "DetectionHead", "FPNFuse", "Head",
    "decode_detections", "deduplicate_across_borders", "concat_detections", "empty_detections",
]
