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
    encoders with 2D positional embeddings place each token exactly where it lies in the image. ``positions`` may
    also be ``[B, L, 2]``: the engine steps ``B`` windows in lockstep and their regions need not sit at the same
    places (an edge window cut short, a masked region skipped).

    The ``B`` rows of a memory are independent windows; scalar entries (token counters) are shared, so every row
    must have consumed the same number of tokens. :meth:`select_memory` keeps some rows (a window that finished
    leaves the lockstep batch) and works for any memory layout made of tensors in dicts, tuples and lists.
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

    def memory_batch_dims(self) -> Any:
        """The memory's layout with, for each tensor, its batch dimension (None: shared, e.g. a counter).

        Found once by comparing ``init_memory(1)`` and ``init_memory(2)`` on the meta device (no memory, no compute),
        so every encoder, present or future, gets :meth:`select_memory` without declaring anything.
        """
        dims = self.__dict__.get("_memory_batch_dims")
        if dims is None:
            one, two = (self.init_memory(b, device=torch.device("meta")) for b in (1, 2))
            dims = _zip_map(_batch_dim, one, two)
            self.__dict__["_memory_batch_dims"] = dims
        return dims

    def select_memory(self, memory: Memory, index: torch.Tensor | list[int]) -> Memory:
        """The memory of the windows (batch rows) ``index``, in that order; shared entries are kept as they are."""
        def take(t: torch.Tensor, dim: int | None) -> torch.Tensor:
            if dim is None:
                return t
            return t.index_select(dim, torch.as_tensor(index, dtype=torch.long, device=t.device))

        return _zip_map(take, memory, self.memory_batch_dims())


def _batch_dim(a: torch.Tensor, b: torch.Tensor) -> int | None:
    for d, (x, y) in enumerate(zip(a.shape, b.shape, strict=False)):
        if x != y:
            return d
    return None


def _zip_map(fn: Any, tree: Any, other: Any) -> Any:
    """``fn(leaf, other_leaf)`` over two memories of the same layout (dicts, tuples, lists of tensors)."""
    if isinstance(tree, dict):
        return {k: _zip_map(fn, v, other[k]) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return type(tree)(_zip_map(fn, v, o) for v, o in zip(tree, other, strict=True))
    return fn(tree, other)
