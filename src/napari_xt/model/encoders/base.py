"""The region encoder: a backbone that turns one sub-region into multi-scale feature maps.

``RegionEncoder.model`` is the raw network (a timm ``features_only`` model for the big backbones), kept under that
exact attribute name so released xT checkpoints (``encoder.model.layers_0...``) map key-for-key onto
``region_encoder.model.layers_0...``. ``forward`` always returns NCHW maps, one per stage (timm's Swin emits NHWC).

This module holds the type alone (torch only), so the model, the builders (:mod:`.recipe`, :mod:`.tiny`), the plain-ViT
neck (:mod:`.vit_neck`) and the catalogue (:mod:`.catalogue`) all import it without importing each other.
"""

from __future__ import annotations

import torch
from torch import nn


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


__all__ = ["RegionEncoder"]
