"""Region encoders: a backbone that turns one sub-region into multi-scale feature maps.

``RegionEncoder.model`` is the raw network (a timm ``features_only`` model for the big backbones), kept under that
exact attribute name so released xT checkpoints (``encoder.model.layers_0...``) map key-for-key onto
``region_encoder.model.layers_0...``. ``forward`` always returns NCHW maps, one per stage (timm's Swin emits NHWC).

Pretrained weights are never a silent random init: ``pretrained=True`` loads a checked file (``weights=FILE``, the
weights folder or the hub cache, see :mod:`.weights`) or raises :class:`~napari_xt.errors.WeightsUnavailable` with the
fix. Plain ViTs (``timm:``/``hf-hub:`` specs and the foundation-model catalogue in :mod:`.encoder_catalog`) get a
feature pyramid (:mod:`.vit_pyramid`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import WeightsUnavailable
from .config import IMAGENET_MEAN, IMAGENET_STD
from .registry import get_region_encoder_builder, list_region_encoders, register_region_encoder
from .zoo import WeightSource, ZooEntry, register_entry

log = logging.getLogger(__name__)

class RegionEncoder(nn.Module):
    """Wraps a multi-scale backbone: ``forward(x [N, C, S, S]) -> [stage maps NCHW]``.

    Attributes: ``model`` (the network), ``channels`` and ``reductions`` (per stage), ``out_dim`` (channels of the
    coarsest stage, which become the region tokens), ``native_size`` (input size the backbone was designed for, or
    None) and ``size_multiple`` (sub-region sizes must be multiples of it).
    """

    def __init__(
        self, model: nn.Module, channels: list[int], reductions: list[int], channels_last: bool = False,
        native_size: int | None = None, size_multiple: int = 32, name: str = "",
    ) -> None:
        super().__init__()
        self.model = model
        self.channels = [int(c) for c in channels]
        self.reductions = [int(r) for r in reductions]
        self.channels_last = channels_last
        self.native_size = native_size
        self.size_multiple = size_multiple
        self.name = name

    @property
    def out_dim(self) -> int:
        return self.channels[-1]

    @property
    def has_neck(self) -> bool:
        """True when ``forward`` = a trainable neck over the backbone's output (a plain ViT's feature pyramid).

        Quick mode caches :meth:`forward_backbone` (the frozen part) and runs :meth:`forward_neck` every step, so a
        random-init neck still trains over cached features; a hierarchical backbone has no neck (identity).
        """
        return False

    def forward_backbone(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's output for ``[N, C, S, S]`` sub-regions: NCHW maps (here: the stage maps themselves)."""
        feats = self.model(x)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return list(feats)

    def forward_neck(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone output -> the stage maps (strides ``reductions``); identity for hierarchical backbones."""
        return [f.contiguous() for f in feats]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_neck(self.forward_backbone(x))


# -- tiny: a small, fast conv net for tests and the demo -------------------------------------------------------------
class _TinyBlock(nn.Module):
    """Depthwise 3x3 + pointwise MLP with a residual: ConvNeXt's shape at a fraction of the cost."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.GroupNorm(1, dim)  # per-sample norm: outputs never depend on the batch
        self.pw1 = nn.Conv2d(dim, 2 * dim, 1)
        self.pw2 = nn.Conv2d(2 * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw2(nn.functional.gelu(self.pw1(self.norm(self.dw(x)))))


class TinyConvNet(nn.Module):
    """4 stages at strides 4/8/16/32; ~40k parameters with the default widths."""

    def __init__(self, in_chans: int = 3, widths: tuple[int, ...] = (16, 32, 48, 64)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, widths[0], 4, stride=4), nn.GroupNorm(1, widths[0]))
        self.downs = nn.ModuleList(
            [nn.Identity()]
            + [nn.Sequential(nn.GroupNorm(1, a), nn.Conv2d(a, b, 2, stride=2)) for a, b in zip(widths, widths[1:])]
        )
        self.stages = nn.ModuleList([_TinyBlock(w) for w in widths])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        out = []
        for down, stage in zip(self.downs, self.stages):
            x = stage(down(x))
            out.append(x)
        return out


@register_region_encoder("tiny")
def tiny(in_chans: int = 3, pretrained: bool = False, img_size: int | None = None,
         widths: tuple[int, ...] = (16, 32, 48, 64), **kwargs: Any) -> RegionEncoder:
    """Fast 4-stage conv net (strides 4-32), any input size divisible by 32; random init only."""
    if kwargs:
        raise TypeError(f"tiny region encoder got unexpected options {sorted(kwargs)}")
    if len(widths) != 4:
        raise ValueError("tiny needs 4 stage widths")
    if pretrained:
        raise WeightsUnavailable("tiny", "none", "build it without pretrained weights (--random-init)")
    return RegionEncoder(TinyConvNet(in_chans, tuple(widths)), list(widths), [4, 8, 16, 32], name="tiny")


register_entry(ZooEntry(
    name="tiny", kind="encoder", group="small", tags=("convnet", "hierarchical"),
    description="fast 4-stage conv net (~40k parameters, strides 4-32), random init only: demos, tests, CPUs",
    config={"builder": "tiny", "widths": [16, 32, 48, 64]}, weights=WeightSource("random")))


# -- timm backbones ------------------------------------------------------------------------------------------------
def _timm_encoder(key: str, timm_name: str, native: int, sized: bool) -> Callable[..., RegionEncoder]:
    """Register ``key`` -> timm ``timm_name`` (hierarchical, ``features_only``); ``sized`` backbones get ``img_size``
    (their position tables depend on it). Pretrained weights come through :mod:`.encoder_spec` (a checked file)."""

    def build(in_chans: int = 3, pretrained: bool = False, img_size: int | None = None, weights: str | None = None,
              **kwargs: Any) -> RegionEncoder:
        from .encoder_spec import build_encoder, timm_recipe, with_name

        if img_size is not None and img_size % 32:
            raise ValueError(f"{key}: sub-region size must be a multiple of 32, got {img_size}")
        if sized and img_size is not None and img_size != native:
            kwargs.setdefault("model_img_size", img_size)
        recipe = with_name(timm_recipe(key, timm_name), key)
        return build_encoder(recipe, in_chans=in_chans, pretrained=pretrained, img_size=img_size, weights=weights,
                             **kwargs)

    build.__name__ = key
    build.__doc__ = f"timm ``{timm_name}`` (native input {native} px; sub-region sizes must be multiples of 32)."
    register_region_encoder(key)(build)
    return build


#: name -> (timm model name, native input px, whether ``img_size`` follows the sub-region size).
TIMM_ENCODERS: dict[str, tuple[str, int, bool]] = {
    "swinv2_tiny": ("swinv2_tiny_window16_256", 256, True),
    "swinv2_small": ("swinv2_small_window16_256", 256, True),
    "swinv2_base": ("swinv2_base_window16_256", 256, True),
    "swinv2_large": ("swinv2_large_window12to16_192to256", 256, True),
    "convnext_tiny": ("convnext_tiny", 224, False),
    "convnext_small": ("convnext_small", 224, False),
    "convnext_base": ("convnext_base", 224, False),
    "hiera_tiny": ("hiera_tiny_224", 224, True),
    "hiera_small": ("hiera_small_224", 224, True),
    "hiera_base": ("hiera_base_224", 224, True),
}
#: Family -> (what it is, tags, licence of timm's default pretrained weights as its pretrained cfg states).
_TIMM_FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "swinv2": ("Swin Transformer V2 (shifted-window attention; the xT paper's encoder)",
               ("transformer", "hierarchical"), "MIT"),
    "convnext": ("ConvNeXt (modern conv net)", ("convnet", "hierarchical"), "Apache-2.0"),
    "hiera": ("Hiera (hierarchical ViT, MAE-pretrained; weights non-commercial)", ("transformer", "hierarchical"),
              "CC-BY-NC-4.0"),
}
for _key, (_timm_name, _native, _sized) in TIMM_ENCODERS.items():
    _timm_encoder(_key, _timm_name, _native, _sized)
    _what, _tags, _licence = _TIMM_FAMILIES[_key.split("_")[0]]
    register_entry(ZooEntry(
        name=_key, kind="encoder", group="general", tags=_tags, licence=_licence,
        description=f"{_what}, timm {_timm_name} (ImageNet weights); native input {_native} px, sub-regions "
                    "multiples of 32",
        config={"builder": "timm", "model_name": _timm_name, "img_size_follows_sub_region": _sized},
        weights=WeightSource("timm", _timm_name), native_size=_native, mean=tuple(IMAGENET_MEAN),
        std=tuple(IMAGENET_STD)))


def create_region_encoder(name: str, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> RegionEncoder:
    """Build a region encoder: a registered name (the catalogue) or a ``timm:NAME`` / ``hf-hub:ORG/REPO`` spec.

    ``img_size=`` is the sub-region size (validated against the encoder's patch/stride); ``pretrained=True`` loads
    checked weights (``weights=FILE`` or the hub cache / weights folder) or raises ``WeightsUnavailable``.
    """
    if name.startswith(("timm:", "hf-hub:", "hf_hub:")):
        from .encoder_spec import create_from_spec

        return create_from_spec(name, in_chans=in_chans, pretrained=pretrained, **kwargs)
    return get_region_encoder_builder(name)(in_chans=in_chans, pretrained=pretrained, **kwargs)


__all__ = ["RegionEncoder", "TinyConvNet", "TIMM_ENCODERS", "create_region_encoder", "list_region_encoders"]
