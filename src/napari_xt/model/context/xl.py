"""Transformer-XL context encoder (Dai et al., 2019) as used by xT: segment recurrence + relative positions.

Each call to :meth:`TransformerXLContextEncoder.forward` is one *segment* (usually one region's tokens). Every layer
attends causally over ``[memory ; segment]`` where the memory holds, for that layer, the hidden states that entered it
for the last ``mem_len`` tokens (detached, so gradients never cross a segment boundary). Attention scores use
relative positions: ``(q_i + u)·k_j + (q_i + v)·W_r R(i - j)`` with ``R`` the sinusoidal embedding of the token
distance, evaluated by an exact gather instead of the rel-shift trick.

Memory (fixed size, whatever the number of regions seen)::

    {"mems":  [layers, B, mem_len, hidden]   layer inputs of the last mem_len tokens, right-aligned,
     "valid": []  long                        how many of the mem_len slots hold real tokens (<= mem_len),
     "sum":   [B, hidden] fp32, "count": [] long   running sum / count of the outputs, for summarize()}

Streaming guarantee: while the window has at most ``mem_len`` tokens, feeding it region by region gives the same
outputs as feeding it whole (every token then sees every earlier token of the window at its true distance). Past
``mem_len`` tokens, streaming forgets the oldest tokens while a whole-window call would not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_context_encoder
from ._common import (
    add_positions,
    check_inputs,
    init_running_mean,
    running_mean,
    sincos_2d,
    sinusoid_1d,
    update_running_mean,
)
from .base import ContextEncoder


class RelPartialLearnableAttention(nn.Module):
    """Multi-head attention with Transformer-XL relative positions and learned biases ``u`` (content), ``v`` (pos)."""

    def __init__(self, hidden: int, heads: int, dropout: float = 0.0, query_block: int = 512) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.hidden, self.heads, self.d_head = hidden, heads, hidden // heads
        self.scale = self.d_head**-0.5
        self.query_block = max(1, int(query_block))
        self.q_proj = nn.Linear(hidden, hidden, bias=False)
        self.kv_proj = nn.Linear(hidden, 2 * hidden, bias=False)
        self.r_proj = nn.Linear(hidden, hidden, bias=False)  # W_r, applied to the sinusoidal R
        self.out_proj = nn.Linear(hidden, hidden, bias=False)
        self.u = nn.Parameter(torch.zeros(heads, self.d_head))  # r_w_bias in the reference code
        self.v = nn.Parameter(torch.zeros(heads, self.d_head))  # r_r_bias
        self.drop = nn.Dropout(dropout)

    def forward(self, x_all: torch.Tensor, n_mem: int) -> torch.Tensor:
        """``x_all`` ``[B, n_mem + L, H]`` (normed memory then segment); returns ``[B, L, H]`` for the segment."""
        b, k_len, _ = x_all.shape
        L = k_len - n_mem
        h, dh = self.heads, self.d_head
        q = self.q_proj(x_all[:, n_mem:]).view(b, L, h, dh).transpose(1, 2)  # [B, h, L, dh]
        k, v = self.kv_proj(x_all).view(b, k_len, 2, h, dh).permute(2, 0, 3, 1, 4)  # each [B, h, K, dh]
        # Relative position embeddings for distances 0 .. K-1 (row d = distance d).
        dist = torch.arange(k_len, device=x_all.device)
        r = self.r_proj(sinusoid_1d(dist, self.hidden, x_all.dtype)).view(k_len, h, dh)  # [K, h, dh]
        q_u = q + self.u[None, :, None, :].to(q.dtype)
        q_v = q + self.v[None, :, None, :].to(q.dtype)

        outs = []
        for i0 in range(0, L, self.query_block):
            i1 = min(L, i0 + self.query_block)
            k_end = n_mem + i1  # keys after the block's last query are masked anyway
            bd_by_dist = torch.einsum("bhid,jhd->bhij", q_v[:, :, i0:i1], r[:k_end])  # column = distance
            qi = torch.arange(i0, i1, device=x_all.device)[:, None] + n_mem  # absolute query index
            kj = torch.arange(k_end, device=x_all.device)[None, :]
            distance = qi - kj  # [qb, k_end]
            causal_mask = distance < 0
            index = distance.clamp(0, k_end - 1).expand(b, h, -1, -1)
            bd = torch.gather(bd_by_dist, -1, index)  # exact equivalent of Transformer-XL's rel-shift
            # the content term, softmax and weighted sum in one fused kernel (flash / memory-efficient on a GPU,
            # the fused CPU kernel otherwise); the relative-position term enters as an additive bias
            bias = (bd * self.scale).masked_fill(causal_mask, float("-inf"))
            outs.append(F.scaled_dot_product_attention(
                q_u[:, :, i0:i1], k[:, :, :k_end], v[:, :, :k_end], attn_mask=bias.to(q.dtype),
                dropout_p=self.drop.p if self.training else 0.0, scale=self.scale))
        out = torch.cat(outs, dim=2).transpose(1, 2).reshape(b, L, self.hidden)
        return self.out_proj(out)


class XLLayer(nn.Module):
    """Pre-norm Transformer-XL layer: relative attention over [memory ; segment], then a GELU feed-forward."""

    def __init__(self, hidden: int, heads: int, ff_mult: int, dropout: float, query_block: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = RelPartialLearnableAttention(hidden, heads, dropout, query_block)
        self.norm2 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(
            nn.Linear(hidden, ff_mult * hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * hidden, hidden),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        x_all = self.norm1(torch.cat([mem, x], dim=1))
        x = x + self.drop(self.attn(x_all, mem.shape[1]))
        return x + self.drop(self.ff(self.norm2(x)))


class TransformerXLContextEncoder(ContextEncoder):
    """Transformer-XL over the region tokens of a context window, with a working memory of ``mem_len`` tokens."""

    causal = True

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        layers: int = 2,
        heads: int = 4,
        mem_len: int = 4096,
        dropout: float = 0.0,
        ff_mult: int = 4,
        pos_2d: bool = True,
        query_block: int = 512,
    ) -> None:
        super().__init__()
        if mem_len < 1:
            raise ValueError(f"mem_len must be >= 1, got {mem_len}")
        self.in_dim, self.out_dim = int(in_dim), int(hidden)
        self.hidden, self.n_layers, self.mem_len = int(hidden), int(layers), int(mem_len)
        self.pos_2d = bool(pos_2d)
        self.input_proj = nn.Linear(self.in_dim, self.hidden)
        self.layers = nn.ModuleList(
            XLLayer(self.hidden, heads, ff_mult, dropout, query_block) for _ in range(self.n_layers)
        )
        self.norm = nn.LayerNorm(self.hidden)

    def init_memory(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        dtype = dtype or torch.float32
        mem = {
            "mems": torch.zeros(self.n_layers, batch, self.mem_len, self.hidden, device=device, dtype=dtype),
            "valid": torch.zeros((), device=device, dtype=torch.long),
        }
        mem.update(init_running_mean(batch, self.hidden, device))
        return mem

    def forward(
        self, tokens: torch.Tensor, memory: dict[str, torch.Tensor], positions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_inputs(tokens, positions, self.in_dim)
        mems = memory["mems"]
        if mems.shape[1] != tokens.shape[0]:
            raise ValueError(f"memory is for batch {mems.shape[1]}, tokens have batch {tokens.shape[0]}")
        n_valid = int(memory["valid"])  # one host sync per segment; lets early segments skip empty slots
        x = self.input_proj(tokens)
        if self.pos_2d:
            x = add_positions(x, sincos_2d(positions.to(x.device), self.hidden, x.dtype))
        L = x.shape[1]
        new_mems = []
        for i, layer in enumerate(self.layers):
            mem_i = mems[i, :, self.mem_len - n_valid :].to(x.dtype)  # right-aligned valid part
            new_mems.append(torch.cat([mems[i].to(x.dtype), x.detach()], dim=1)[:, -self.mem_len :])
            x = layer(x, mem_i)
        out = self.norm(x)
        total, count = update_running_mean(memory, out)
        new_memory = {
            "mems": torch.stack(new_mems).to(mems.dtype),
            "valid": (memory["valid"] + L).clamp(max=self.mem_len),
            "sum": total,
            "count": count,
        }
        return out, new_memory

    def summarize(self, memory: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean of every output token of the window so far (kept in memory as a running sum and count)."""
        return running_mean(memory, self.norm.weight.dtype)


@register_context_encoder("transformer_xl")
def transformer_xl(in_dim: int, **kwargs: Any) -> TransformerXLContextEncoder:
    """Transformer-XL: options hidden=256, layers=2, heads=4, mem_len=4096, dropout=0, ff_mult=4, pos_2d=True."""
    return TransformerXLContextEncoder(in_dim, **kwargs)


__all__ = ["TransformerXLContextEncoder", "RelPartialLearnableAttention", "transformer_xl"]
