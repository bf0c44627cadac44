"""The contract every context encoder honours, so the engine can stream any of them region by region.

A context encoder sees the token sequence of a context window one region at a time. Whatever it needs from earlier
regions lives in ``memory``, whose size is fixed by the encoder's options (never by the number of regions seen). For
causal encoders, feeding a window region by region gives the same outputs as feeding it whole, which is what lets the
engine bound memory without changing results.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Memory = Any
"""A (nested) tuple/dict of tensors whose shapes do not depend on how many regions were seen."""


class ContextEncoder(nn.Module):
    """Base class: subclasses set ``in_dim``/``out_dim`` and implement the three methods below.

    ``tokens`` are ``[B, L, in_dim]`` (L tokens of the current region(s), row-major over each region's token grid)
    and ``positions`` are ``[L, 2]`` integer (row, col) coordinates of those tokens on the *window's* token grid, so
    encoders with 2D positional embeddings place each token exactly where it lies in the image.
    """

    #: True when streaming region by region equals a whole-window forward (tested for every such encoder).
    causal: bool = True
    in_dim: int
    out_dim: int

    def init_memory(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Memory:
        raise NotImplementedError

    def forward(
        self, tokens: torch.Tensor, memory: Memory, positions: torch.Tensor
    ) -> tuple[torch.Tensor, Memory]:
        raise NotImplementedError

    def summarize(self, memory: Memory) -> torch.Tensor:
        """Window-level embedding ``[B, out_dim]`` for classification heads (e.g. the CLS token read-out)."""
        raise NotImplementedError
