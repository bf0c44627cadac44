"""Plain ViTs as region encoders: one token grid turned into stride-4/8/16/32 maps (a ViTDet-style simple pyramid).

Most foundation models (UNI, Virchow2, H-optimus, Prov-GigaPath, DINOv2, SSL4EO ViTs) are plain ViTs: one grid of
patch tokens at the patch stride, plus class/register tokens. xT's heads and context encoders expect a hierarchical
backbone's four maps, so, as in ViTDet (Li et al. 2022), the last block's grid (or four blocks' grids, via timm's
``forward_intermediates``) is turned into a pyramid: transposed convolutions up, identity, max-pooling down.

* Prefix tokens (class + registers) are dropped by timm's ``forward_intermediates`` using the model's own
  ``num_prefix_tokens``, so a ViT with 4 or 8 registers yields exactly the ``(S/p)^2`` patch tokens.
* Patch 16 gives the stride-16 grid directly. Patch 14 is run at the sub-region's own pixels (the model sees the
  resolution it was trained at) and its ``S/14`` grid is resampled to ``S/16``, so every level sits on an integer
  stride; that is why a patch-14 sub-region must be a multiple of 224 (= lcm(14, 32)). Patch 8 gives stride 8.
* Weights load into ``RegionEncoder.model`` (the timm ViT, timm key names; :mod:`.loading`) and the pyramid lives in
  ``.neck``, so a hub/timm state dict maps key for key; the neck is always trained (it starts random: it has no
  pretrained weights).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError
from .base import RegionEncoder

#: The pyramid's strides (what the heads and the tokeniser expect of every region encoder).
STRIDES = (4, 8, 16, 32)


def valid_multiple(patch: int) -> int:
    """Sub-region sizes a patch-``patch`` ViT accepts are multiples of this (lcm of the patch and stride 32)."""
    return patch * 32 // math.gcd(patch, 32)


def check_sub_region(name: str, patch: int, size: int) -> None:
    """``ConfigError`` (one sentence with valid sizes) unless ``size`` suits a patch-``patch`` ViT."""
    step = valid_multiple(patch)
    if size <= 0 or size % step:
        ok = ", ".join(str(step * k) for k in range(1, 4) if step * k <= max(step, 1024))
        raise ConfigError(f"sub_region_size {size} does not suit region encoder {name!r}: a patch-{patch} ViT needs a "
                          f"multiple of {step} (lcm of the patch size and the coarsest stride 32), e.g. {ok}")


class _Norm2d(nn.GroupNorm):
    """LayerNorm over channels for NCHW maps (GroupNorm with one group is per-sample: batch-independent)."""

    def __init__(self, dim: int) -> None:
        super().__init__(1, dim)


def _up(dim: int, out: int) -> nn.Module:
    return nn.ConvTranspose2d(dim, out, kernel_size=2, stride=2)


class SimplePyramid(nn.Module):
    """Stride-``base`` grid(s) ``[N, D, h, w]`` -> maps at strides 4/8/16/32 (ViTDet's simple feature pyramid).

    ``base`` is 16 (patch 14/16) or 8 (patch 8). Channels shrink on the way up (``D/4`` at 4x, ``D/2`` at 2x) as in
    ViTDet, so a ViT-H's stride-4 map is not 1280 channels deep.
    """

    def __init__(self, dim: int, base: int) -> None:
        super().__init__()
        if base not in (8, 16):
            raise ValueError(f"pyramid base stride must be 8 or 16, got {base}")
        self.base = base
        levels: list[nn.Module] = []
        channels: list[int] = []
        for stride in STRIDES:
            scale = base // stride if stride <= base else 0
            if scale == 4:
                levels.append(nn.Sequential(_up(dim, dim // 2), _Norm2d(dim // 2), nn.GELU(), _up(dim // 2, dim // 4)))
                channels.append(dim // 4)
            elif scale == 2:
                levels.append(_up(dim, dim // 2))
                channels.append(dim // 2)
            elif scale == 1:
                levels.append(nn.Identity())
                channels.append(dim)
            else:
                levels.append(nn.MaxPool2d(stride // base))
                channels.append(dim)
        self.levels = nn.ModuleList(levels)
        self.channels = channels

    def forward(self, grids: list[torch.Tensor]) -> list[torch.Tensor]:
        """One grid for every level, or one per level (finest level from the earliest block)."""
        if len(grids) not in (1, len(self.levels)):
            raise ValueError(f"pyramid takes 1 or {len(self.levels)} token grids, got {len(grids)}")
        return [level(grids[i if len(grids) > 1 else 0]) for i, level in enumerate(self.levels)]


class ViTRegionEncoder(RegionEncoder):
    """A timm plain ViT (``model``) + :class:`SimplePyramid` (``neck``): ``[N, C, S, S]`` -> 4 NCHW maps.

    ``blocks``: which blocks' token grids feed the pyramid, as timm's ``forward_intermediates`` ``indices`` (an int
    ``n`` = the last ``n`` blocks; a list = those blocks); 1 or 4 grids.
    """

    def __init__(self, vit: nn.Module, name: str, blocks: int | list[int] = 1, native_size: int | None = None) -> None:
        patch = int(_patch_size(vit))
        dim = int(getattr(vit, "embed_dim", 0) or getattr(vit, "num_features", 0))
        base = 8 if patch <= 8 else 16
        neck = SimplePyramid(dim, base)
        super().__init__(vit, neck.channels, list(STRIDES), native_size=native_size,
                         size_multiple=valid_multiple(patch), name=name)
        self.neck = neck
        self.patch = patch
        self.base = base
        self.blocks = blocks
        n = blocks if isinstance(blocks, int) else len(blocks)
        if n not in (1, 4):
            raise ConfigError(f"region encoder {name!r}: blocks must name 1 or 4 ViT blocks, got {blocks!r}")

    @property
    def num_prefix_tokens(self) -> int:
        """Class + register tokens the ViT carries (dropped before the pyramid)."""
        return int(getattr(self.model, "num_prefix_tokens", 0))

    @property
    def has_neck(self) -> bool:
        return True

    def forward_backbone(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The chosen blocks' token grids ``[N, D, S/base, S/base]`` (prefix tokens dropped, patch-14 grids resampled
        onto the base stride): what Quick mode caches, since the pyramid over them trains."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h % self.size_multiple or w % self.size_multiple:
            raise ConfigError(f"{self.name}: input {h}x{w} px is not a multiple of {self.size_multiple}")
        grids = self.model.forward_intermediates(  # type: ignore[operator]  # timm ViT method
            x, indices=self.blocks, norm=True, output_fmt="NCHW", intermediates_only=True)
        target = (h // self.base, w // self.base)
        return [g if tuple(g.shape[-2:]) == target else
                F.interpolate(g, size=target, mode="bilinear", align_corners=False) for g in grids]

    def forward_neck(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [f.contiguous() for f in self.neck(feats)]


def _patch_size(vit: nn.Module) -> int:
    embed = getattr(vit, "patch_embed", None)
    size = getattr(embed, "patch_size", None)
    if size is None:
        raise ConfigError(f"{type(vit).__name__} has no patch_embed.patch_size: not a plain ViT")
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if size[0] != size[1]:
        raise ConfigError(f"non-square patches {size} are not supported")
    return int(size[0])


__all__ = ["STRIDES", "SimplePyramid", "ViTRegionEncoder", "check_sub_region", "valid_multiple"]
