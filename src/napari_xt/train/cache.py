"""Quick training: a frozen backbone's output kept on disk, so each region is encoded once, not every epoch.

The region encoder's backbone is by far the most expensive part of a training step, and with a frozen encoder (the
default for big foundation models) its output never changes. ``FeatureCache`` keeps each region's backbone output
(:class:`~napari_xt.model.xt.BackboneFeatures`: per sub-region, before the encoder's neck and before stitching) as
float16 in a zarr v3 folder. Each step runs the neck, the stitching, the context encoder and the heads over it. For
a plain ViT the neck is the random-init feature pyramid of ``model/encoders/vit_neck.py``, which must train even when
the ViT is frozen: caching after it (as the first version did) froze it at random. For hierarchical backbones (Swin,
ConvNeXt, Hiera, tiny) the neck is the identity and the cache holds their stage maps, as before.

Invalidation is by name, never by trust: the folder is keyed by the backbone (config + a digest of its weights, the
neck excluded since it trains; the same way ``engine.identity.model_checksum`` digests a whole model), what is cached
(:data:`CACHE_FORMAT`: a cache of post-neck features from an older version is never read as backbone output), the
image (``image_fingerprint``) and the plan (``Plan.checksum``: level, scale, region boxes, windows). A changed
model, image or plan reads from a new, empty folder; the old folders are pruned, least recently used first, to keep
the whole cache under its budget. Heads, context encoder and neck are not part of the key: continuing from the last
model reuses the features.

Augmentation: features are cached for the un-augmented region; the window's flip/rotation is applied to the neck's
stitched maps and token grid (exact for the labels and the window layout, an approximation for the encoder, which is
not rotation-equivariant). Pixel-changing augmentation (colour, speckle) is not applied in Quick mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import zarr

from ..engine.identity import image_fingerprint
from ..engine.reader import read_region_pixels
from ..model.xt import BackboneFeatures, RegionFeatures
from .data import WindowSet

if TYPE_CHECKING:
    from ..engine.plan import Plan
    from ..io import LargeImage
    from ..model import XTModel

ENCODER_FIELDS = ("region_encoder", "region_encoder_kwargs", "region_size", "sub_region_size", "overlap", "pad_mode",
                  "in_chans", "mean", "std", "input_kind")
#: Encoder options that change memory use, not features (left out of the key).
_NOT_FEATURES = ("sub_batch",)
#: What a cache folder holds; part of the key, so folders of another format are never read (v1: post-neck features).
CACHE_FORMAT = "backbone-v2"


def default_root() -> Path:
    """``$NAPARI_XT_FEATURE_CACHE``, else ``features`` in napari-xt's user cache folder."""
    env = os.environ.get("NAPARI_XT_FEATURE_CACHE")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-xt")) / "features"
    except ImportError:
        return Path.home() / ".cache" / "napari-xt" / "features"


def encoder_checksum(model: XTModel) -> str:
    """Identity of what the cache holds: :data:`CACHE_FORMAT`, the config fields the backbone reads and a digest of
    the backbone's weights (``region_encoder.model``: not the neck, which trains over the cache)."""
    cfg = model.config.to_dict()
    fields = {k: cfg.get(k) for k in ENCODER_FIELDS}
    fields["region_encoder_kwargs"] = {k: v for k, v in (fields["region_encoder_kwargs"] or {}).items()
                                       if k not in _NOT_FEATURES}
    fields["format"] = CACHE_FORMAT
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.region_encoder.model.state_dict().items()):
        h.update(name.encode())
        flat = tensor.detach().float().flatten()
        h.update(flat[:: max(1, flat.numel() // 256)].cpu().numpy().tobytes())
        h.update(str(float(flat.sum())).encode())
    return h.hexdigest()[:16]


def cache_key(model: XTModel, image: LargeImage, plan: Plan) -> str:
    """Folder name: encoder, image and plan identities (any change means a fresh folder)."""
    return f"{encoder_checksum(model)}-{image_fingerprint(image)}-{plan.checksum()}"


class FeatureCache:
    """Backbone output of one (encoder, image, plan) on disk as float16; ``get(region_id, make)`` encodes on a miss.

    Features are returned as float32 after the float16 round trip on a miss too, so an epoch from a cold cache and
    one from a warm cache train on exactly the same numbers. Past ``budget_mb`` new regions are encoded every time
    instead of stored (correct, only slower).
    """

    def __init__(self, root: str | os.PathLike, key: str, budget_mb: float = 4096.0):
        self.root, self.key = Path(root), key
        self.path = self.root / key
        self.budget = int(budget_mb * 2**20)
        prune(self.root, self.budget, keep=key)
        self.path.mkdir(parents=True, exist_ok=True)
        os.utime(self.path)  # most recently used
        self.group = zarr.open_group(str(self.path), mode="a")
        self.used = folder_bytes(self.path)
        self.hits = self.misses = 0

    def get(self, region_id: int, make: Callable[[], BackboneFeatures]) -> BackboneFeatures:
        name = f"r{region_id}"
        if name in self.group:
            node = self.group[name]
            if isinstance(node, zarr.Group) and node.attrs.get("complete"):
                self.hits += 1
                return _load(node)
        self.misses += 1
        feats = make()
        arrays = [m.detach().cpu().to(torch.float16).numpy() for m in feats.maps]
        size = sum(a.nbytes for a in arrays)
        if self.used + size <= self.budget:
            node = self.group.require_group(name)
            for i, a in enumerate(arrays):
                node.create_array(f"a{i}", data=a, chunks=a.shape, overwrite=True)
            node.attrs.update({"region_size": list(feats.region_size), "n": len(arrays), "format": CACHE_FORMAT,
                               "complete": True})  # written last: a half-written entry is never read
            self.used += size
        tensors = [torch.from_numpy(a.astype(np.float32)) for a in arrays]
        return BackboneFeatures(tensors, tuple(feats.region_size))  # type: ignore[arg-type]


def cached_features(chunk: list, caches: list[FeatureCache], windows: WindowSet, normalisers: list,
                    model: XTModel, device: torch.device) -> RegionFeatures:
    """Quick mode: a chunk's features, stacked on ``device``: the backbone's output from the caches (a miss encodes
    the un-augmented region without gradients), then the encoder's neck (with gradients when enabled: a ViT's
    pyramid trains) and stitching, then each sample's flip/rotation."""
    parts = []
    for s in chunk:
        plan, item = windows.plans[s.image], windows.images[s.image]
        region = plan.regions[s.region_id]

        def make(region=region, plan=plan, item=item, image=s.image) -> BackboneFeatures:
            x = normalisers[image](read_region_pixels(item.image, plan, region)).transpose(2, 0, 1)
            with torch.no_grad():
                return model.encode_backbone(torch.from_numpy(np.ascontiguousarray(x))[None].to(device))

        raw = caches[s.image].get(s.region_id, make)
        raw = BackboneFeatures([m.to(device) for m in raw.maps], raw.region_size)
        parts.append(transform_features(model.features_from_backbone(raw), *s.transform))
    maps = [torch.cat([p.maps[i] for p in parts]) for i in range(len(parts[0].maps))]
    return RegionFeatures(torch.cat([p.tokens for p in parts]), parts[0].grid, maps, parts[0].region_size)


def _load(node: zarr.Group) -> BackboneFeatures:
    n = int(node.attrs["n"])  # type: ignore[arg-type]
    tensors = [torch.from_numpy(np.asarray(cast(zarr.Array, node[f"a{i}"])[...]).astype(np.float32)) for i in range(n)]
    size = tuple(node.attrs["region_size"])  # type: ignore[arg-type]
    return BackboneFeatures(tensors, size)  # type: ignore[arg-type]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def prune(root: Path, budget: int, keep: str = "") -> None:
    """Delete whole key folders, least recently used first, until ``root`` fits in ``budget`` bytes."""
    if not root.is_dir():
        return
    folders = sorted((p for p in root.iterdir() if p.is_dir() and p.name != keep), key=lambda p: p.stat().st_mtime)
    total = sum(folder_bytes(p) for p in root.iterdir() if p.is_dir())
    for old in folders:
        if total <= budget:
            break
        total -= folder_bytes(old)
        shutil.rmtree(old, ignore_errors=True)


def transform_features(feats: RegionFeatures, k: int, flip: bool) -> RegionFeatures:
    """The window's flip/rotation applied to cached maps and the token grid (as ``data.dihedral`` does to pixels)."""
    if not k and not flip:
        return feats

    def t(x: torch.Tensor) -> torch.Tensor:
        if flip:
            x = torch.flip(x, dims=(-1,))
        return torch.rot90(x, k, dims=(-2, -1)).contiguous()

    n, _, d = feats.tokens.shape
    gh, gw = feats.grid
    grid_tokens = t(feats.tokens.reshape(n, gh, gw, d).permute(0, 3, 1, 2))
    grid = (int(grid_tokens.shape[-2]), int(grid_tokens.shape[-1]))
    tokens = grid_tokens.permute(0, 2, 3, 1).reshape(n, -1, d)
    return RegionFeatures(tokens, grid, [t(m) for m in feats.maps], feats.region_size)
