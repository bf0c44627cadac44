"""``tiny``: a small, fast conv net (~40k parameters, strides 4-32) for tests, the demo models and CPUs.

Random init only: asking it for pretrained weights is an error, never a silent random init. Registered (builder and
zoo entry) by :mod:`.catalogue`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import WeightsUnavailable
from .base import RegionEncoder


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


__all__ = ["TinyConvNet", "tiny"]
