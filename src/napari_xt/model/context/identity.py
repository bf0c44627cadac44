"""``none``: no context mixing at all, just a per-token Linear.

Useful as the ablation baseline (regions decoded independently, i.e. a plain tiled backbone) and as the cheapest
encoder for tests. Its memory keeps only a running sum/count of output tokens so ``summarize`` (and thus a
classification head) still works: fixed size, and streaming equals a whole-window call exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..registry import register_context_encoder
from .base import ContextEncoder


class IdentityContextEncoder(ContextEncoder):
    causal = True

    def __init__(self, in_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim or in_dim)
        self.proj = nn.Linear(self.in_dim, self.out_dim)

    def init_memory(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum [B, out_dim] fp32, count [] long)``: the running mean read by ``summarize``."""
        return (torch.zeros(batch, self.out_dim, device=device, dtype=torch.float32),
                torch.zeros((), device=device, dtype=torch.long))

    def forward(
        self, tokens: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], positions: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if tokens.dim() != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(f"tokens must be [B, L, {self.in_dim}], got {tuple(tokens.shape)}")
        out = self.proj(tokens)
        total, count = memory
        # Memory from earlier calls is detached (same truncated-BPTT rule as the other encoders).
        total = total.detach() + out.float().sum(1)
        return out, (total, count.detach() + tokens.shape[1])

    def summarize(self, memory: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        total, count = memory
        return (total / count.clamp_min(1)).to(self.proj.weight.dtype)


@register_context_encoder("none")
def none(in_dim: int, **kwargs: Any) -> IdentityContextEncoder:
    """No context: Linear(in_dim, out_dim = in_dim); option ``out_dim``."""
    return IdentityContextEncoder(in_dim, **kwargs)
