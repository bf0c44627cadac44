"""Region encoders: a backbone that turns one sub-region into multi-scale feature maps.

``RegionEncoder.model`` is the raw network (a timm ``features_only`` model for the big backbones), kept under that
exact attribute name so released xT checkpoints (``encoder.model.layers_0...``) map key-for-key onto
``region_encoder.model.layers_0...``. ``forward`` always returns NCHW maps, one per stage (timm's Swin emits NHWC).

Pretrained weights are fetched only when asked. The hub is probed first with a short timeout (in a daemon thread, so
a hanging DNS lookup cannot block), and any failure falls back to random init with a warning: the plugin must never
hang on an offline workstation.
"""

from __future__ import annotations

import logging
import socket
import threading
import warnings
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from .config import IMAGENET_MEAN, IMAGENET_STD
from .registry import get_region_encoder_builder, list_region_encoders, register_region_encoder
from .zoo import WeightSource, ZooEntry, register_entry

log = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
HUB_TIMEOUT_S = 3.0


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

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return [f.contiguous() for f in feats]


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
        _warn("no pretrained weights exist for 'tiny': random init")
    return RegionEncoder(TinyConvNet(in_chans, tuple(widths)), list(widths), [4, 8, 16, 32], name="tiny")


register_entry(ZooEntry(
    name="tiny", kind="encoder", group="small", tags=("convnet", "hierarchical"),
    description="fast 4-stage conv net (~40k parameters, strides 4-32), random init only: demos, tests, CPUs",
    config={"builder": "tiny", "widths": [16, 32, 48, 64]}, weights=WeightSource("random")))


# -- timm backbones ------------------------------------------------------------------------------------------------
def _warn(msg: str) -> None:
    log.warning(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """True if a TCP connection to the weights hub opens within ``timeout`` s (DNS included)."""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((HUB_HOST, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def _weights_cached(timm_name: str) -> bool:
    """True if the hub cache already holds this model's weights (then no network is needed)."""
    try:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(timm_name)
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        if not repo:
            return False
        repo = repo.split("@")[0]
        return any(
            isinstance(try_to_load_from_cache(repo, fname), str)
            for fname in ("model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
        )
    except Exception:  # any failure just means "not known to be cached"
        return False


def _create_timm(timm_name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    import timm

    if pretrained and not _weights_cached(timm_name) and not _hub_reachable():
        _warn(f"offline: random init for {timm_name} (pretrained weights are not cached and the hub is unreachable)")
        pretrained = False
    try:
        return timm.create_model(timm_name, features_only=True, pretrained=pretrained, **kwargs)
    except Exception as err:  # a failed download must not stop the model from being built
        if not pretrained:
            raise
        _warn(f"offline: random init for {timm_name} (download failed: {err})")
        return timm.create_model(timm_name, features_only=True, pretrained=False, **kwargs)


def _timm_encoder(key: str, timm_name: str, native: int, sized: bool) -> Callable[..., RegionEncoder]:
    """Register ``key`` -> timm ``timm_name``; ``sized`` backbones get ``img_size`` (their position tables depend on
    it)."""

    def build(in_chans: int = 3, pretrained: bool = False, img_size: int | None = None, **kwargs: Any) -> RegionEncoder:
        if img_size is not None and img_size % 32:
            raise ValueError(f"{key}: sub-region size must be a multiple of 32, got {img_size}")
        if sized and img_size is not None and img_size != native:
            kwargs.setdefault("img_size", img_size)
        model = _create_timm(timm_name, pretrained, in_chans=in_chans, **kwargs)
        info = cast(Any, model).feature_info  # timm FeatureInfo
        fmt = str(getattr(model, "output_fmt", "NCHW"))
        return RegionEncoder(
            model, info.channels(), info.reduction(), channels_last=fmt.endswith("NHWC"),
            native_size=native, size_multiple=32, name=key,
        )

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
        description=f"{_what}, timm {_timm_name}; native input {_native} px, sub-regions multiples of 32",
        config={"builder": "timm", "model_name": _timm_name, "img_size_follows_sub_region": _sized},
        weights=WeightSource("timm", _timm_name), native_size=_native, mean=tuple(IMAGENET_MEAN),
        std=tuple(IMAGENET_STD)))


def create_region_encoder(name: str, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> RegionEncoder:
    """Build a registered region encoder; ``img_size=`` sets the sub-region size for Swin/Hiera."""
    return get_region_encoder_builder(name)(in_chans=in_chans, pretrained=pretrained, **kwargs)


__all__ = ["RegionEncoder", "TinyConvNet", "TIMM_ENCODERS", "create_region_encoder", "list_region_encoders"]
