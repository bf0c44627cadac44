"""Hyper: xT's LLaMA-style causal transformer context encoder, streamed through a bounded K/V cache.

Architecture (the one the released xT classification checkpoints were trained with)::

    x = input_proj(tokens) + sincos_2d(positions)          # fixed 2D sin-cos embedding, added AFTER the projection
    for each layer:                                        # pre-norm LLaMA block, no final norm
        x = x + attn.proj(causal_attention(attn.qkv(input_layernorm(x))))
        x = x + mlp.down_proj(gelu(mlp.gate_proj(h)) * mlp.up_proj(h)),  h = post_attention_layernorm(x)
    summary = the same layers applied to ``cls_token`` (no position), appended LAST, attending to every token

Reference details reproduced exactly (public xT code, ``LLMClassificationDecoder``/``LLMLayer``):

* RMSNorm (weight only) with eps = 1e-5, computed in fp32 and cast back before the weight (as ``LlamaRMSNorm``).
* GELU is the exact (erf) one, ``nn.GELU()`` defaults; the MLP is gated, bias-free, 4 x hidden wide.
* ``heads = hidden // 128``; ``qkv`` output laid out as ``[3, heads, head_dim]``; softmax scale ``head_dim ** -0.5``.
* Positional embedding: MAE's ``get_2d_sincos_pos_embed`` on the stitched token map. Its ``np.meshgrid(w, h)``
  quirk puts the COLUMN in the first half of the channels and the ROW in the second half::

      w_k = 10000 ** (-k / (hidden / 4)),  k = 0 .. hidden/4 - 1
      pe(row, col) = [sin(col * w), cos(col * w), sin(row * w), cos(row * w)]

  The reference evaluates it on the ``h x h`` grid of the whole stitched image (tokens row-major); here the (row,
  col) come from ``positions`` on the window's token grid, which is the same thing and also works region by region.
  The CLS token gets no position.
* Attention is causal. Up to ``exact_max_len`` keys (4096, the reference's HyperAttention ``min_seq_len``) it is
  exact (``F.scaled_dot_product_attention``); above that an approximate, sub-quadratic HyperAttention-style path is
  used (see :func:`hyper_attention`).

Streaming: memory holds, per layer, the keys and values of the last ``mem_len`` tokens in fixed-size buffers
(``[layers, B, heads, mem_len, head_dim]``) plus a valid-length counter; new tokens attend causally to the cache and
to themselves, and the oldest entries are evicted once the cache is full. While a window fits in ``mem_len`` tokens
(and each call stays below ``exact_max_len`` keys), feeding it region by region gives the same outputs as one
whole-window call, and ``summarize`` gives the reference's CLS read-out. Longer windows see a sliding ``mem_len``
context (the CLS sees the last ``mem_len`` tokens).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_context_encoder
from ._common import add_positions, check_positions
from ._hyper_attention import LSHConfig, hyper_attention
from .base import ContextEncoder


# --------------------------------------------------------------------------------------------- positional embedding
def xt_sincos_2d(positions: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The reference's fixed 2D sin-cos embedding ``[..., dim]`` of (row, col) ``positions`` ``[..., 2]``.

    Channel layout ``[sin(col w), cos(col w), sin(row w), cos(row w)]`` with ``w_k = 10000 ** (-k / (dim / 4))``
    (MAE ``get_2d_sincos_pos_embed`` including its column-first ordering). Computed in float64, returned in ``dtype``.
    """
    if dim % 4:
        raise ValueError(f"the 2D sin-cos embedding needs hidden divisible by 4, got {dim}")
    quarter = dim // 4
    omega = torch.arange(quarter, device=positions.device, dtype=torch.float64) / quarter
    omega = 1.0 / (10000.0**omega)
    pos = positions.to(torch.float64)
    cols = pos[..., 1:2] * omega
    rows = pos[..., 0:1] * omega
    return torch.cat([cols.sin(), cols.cos(), rows.sin(), rows.cos()], dim=-1).to(dtype)



# ---------------------------------------------------------------------------------------------------------- modules
class RMSNorm(nn.Module):
    """LLaMA RMSNorm: normalise in fp32, cast back to the input dtype, then scale (weight only)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class HyperAttentionModule(nn.Module):
    """``qkv`` (with bias) -> causal multi-head attention -> ``proj``. Attribute names match the released keys."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, L, dim]`` -> q, k, v ``[B, heads, L, head_dim]`` (layout ``[3, heads, head_dim]`` as the reference)."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v

    def merge(self, attn: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = attn.shape
        return self.proj(attn.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class GatedMLP(nn.Module):
    """``down_proj(gelu(gate_proj(x)) * up_proj(x))``, no biases (LLaMA MLP with the reference's exact GELU)."""

    def __init__(self, dim: int, inner: int, gelu_approximate: str = "none") -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, inner, bias=False)
        self.up_proj = nn.Linear(dim, inner, bias=False)
        self.down_proj = nn.Linear(inner, dim, bias=False)
        self.gelu_approximate = gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.gate_proj(x), approximate=self.gelu_approximate) * self.up_proj(x))


class HyperLayer(nn.Module):
    """Pre-norm block: ``x + attn(input_layernorm(x))`` then ``x + mlp(post_attention_layernorm(x))``."""

    def __init__(self, dim: int, heads: int, inner: int, eps: float = 1e-5, gelu_approximate: str = "none") -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.attn = HyperAttentionModule(dim, heads)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = GatedMLP(dim, inner, gelu_approximate)

    def step(self, x: torch.Tensor, k_prev: torch.Tensor, v_prev: torch.Tensor,
             lsh: LSHConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``[B, L, dim]`` after ``k_prev``/``v_prev`` ``[B, heads, P, head_dim]``; returns (x, K, V) with the
        full ``[B, heads, P + L, head_dim]`` keys/values this layer attended to."""
        q, k, v = self.attn.split(self.input_layernorm(x))
        if k_prev.shape[2]:
            k = torch.cat([k_prev.to(k.dtype), k], dim=2)
            v = torch.cat([v_prev.to(v.dtype), v], dim=2)
        x = x + self.attn.merge(hyper_attention(q, k, v, lsh))
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class HyperContextEncoder(ContextEncoder):
    """xT's "Hyper" context encoder (see the module docstring). ``out_dim = hidden``."""

    causal = True

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        layers: int = 2,
        heads: int | None = None,
        mlp_ratio: float = 4.0,
        mem_len: int = 4096,
        exact_max_len: int = 4096,
        lsh_projections: int = 7,
        lsh_block: int = 256,
        lsh_samples: int = 256,
        lsh_seed: int = 0,
        norm_eps: float = 1e-5,
        gelu_approximate: str = "none",
        detach_memory: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.hidden = int(in_dim), int(hidden), int(hidden)
        self.heads = int(heads) if heads else max(1, self.hidden // 128)
        self.inner = int(round(self.hidden * mlp_ratio))
        self.n_layers, self.mem_len = int(layers), int(mem_len)
        if self.mem_len <= 0 or self.n_layers <= 0:
            raise ValueError("mem_len and layers must be positive")
        if self.hidden % 4:
            raise ValueError(f"hidden must be divisible by 4 (2D sin-cos embedding), got {hidden}")
        self.detach_memory = bool(detach_memory)
        self.input_proj = nn.Linear(self.in_dim, self.hidden)
        self.layers = nn.ModuleList(
            HyperLayer(self.hidden, self.heads, self.inner, norm_eps, gelu_approximate) for _ in range(self.n_layers)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.hidden))
        nn.init.normal_(self.cls_token, std=1e-6)  # as the reference
        head_dim = self.hidden // self.heads
        gen = torch.Generator(device="cpu").manual_seed(int(lsh_seed))
        projections = torch.randn(head_dim, int(lsh_projections), generator=gen, device="cpu")
        self.lsh = LSHConfig(exact_max_len, lsh_block, lsh_samples, projections, lsh_seed)

    # -- memory ----------------------------------------------------------------------------------------------------
    def init_memory(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        """``{"k", "v": [layers, B, heads, mem_len, head_dim], "length": [] long}`` (valid entries first)."""
        p = self.input_proj.weight
        device, dtype = device or p.device, dtype or p.dtype
        shape = (self.n_layers, batch, self.heads, self.mem_len, self.hidden // self.heads)
        return {
            "k": torch.zeros(shape, device=device, dtype=dtype),
            "v": torch.zeros(shape, device=device, dtype=dtype),
            "length": torch.zeros((), device=device, dtype=torch.long),
        }

    def _layers(self) -> Iterable[HyperLayer]:
        return cast("Iterable[HyperLayer]", self.layers)

    def _cached(self, memory: dict[str, torch.Tensor], i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = int(memory["length"])
        k, v = memory["k"][i, :, :, :n], memory["v"][i, :, :, :n]
        if self.detach_memory:
            k, v = k.detach(), v.detach()
        return k, v

    def _store(self, kv: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Keep the newest ``mem_len`` entries of ``kv`` ``[B, H, n, d]``, left-aligned in a fixed-size buffer."""
        kv = kv[:, :, -self.mem_len:].to(like.dtype)
        pad = self.mem_len - kv.shape[2]
        return F.pad(kv, (0, 0, 0, pad)) if pad else kv

    # -- contract --------------------------------------------------------------------------------------------------
    def forward(
        self, tokens: torch.Tensor, memory: dict[str, torch.Tensor], positions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if tokens.dim() != 3 or tokens.shape[-1] != self.in_dim:
            raise ValueError(f"tokens must be [B, L, {self.in_dim}], got {tuple(tokens.shape)}")
        if positions is None:
            raise ValueError(f"positions must be [{tokens.shape[1]}, 2] (row, col), got None")
        check_positions(positions, tokens.shape[0], tokens.shape[1])
        if memory["k"].shape[1] != tokens.shape[0]:
            raise ValueError(f"memory is for batch {memory['k'].shape[1]}, tokens have batch {tokens.shape[0]}")
        if tokens.shape[1] == 0:
            return tokens.new_zeros(tokens.shape[0], 0, self.hidden), memory
        x = self.input_proj(tokens)
        x = add_positions(x, xt_sincos_2d(positions.to(x.device), self.hidden, x.dtype))
        new_k, new_v = [], []
        for i, layer in enumerate(self._layers()):
            k_prev, v_prev = self._cached(memory, i)
            x, k, v = layer.step(x, k_prev, v_prev, self.lsh)
            new_k.append(self._store(k, memory["k"]))
            new_v.append(self._store(v, memory["v"]))
        length = torch.clamp(memory["length"] + tokens.shape[1], max=self.mem_len)
        return x, {"k": torch.stack(new_k), "v": torch.stack(new_v), "length": length}

    def summarize(self, memory: dict[str, torch.Tensor]) -> torch.Tensor:
        """The CLS read-out ``[B, hidden]``: ``cls_token`` (no position) through every layer, attending to the cached
        keys/values of that layer and to itself, i.e. the reference's CLS appended last to the causal sequence."""
        batch = memory["k"].shape[1]
        x = self.cls_token.to(self.input_proj.weight.dtype).expand(batch, 1, self.hidden)
        for i, layer in enumerate(self._layers()):
            k_prev, v_prev = self._cached(memory, i)
            x, _, _ = layer.step(x, k_prev, v_prev, self.lsh)
        return x[:, 0]


@register_context_encoder("hyper")
def hyper(in_dim: int, **kwargs: Any) -> HyperContextEncoder:
    """xT Hyper: LLaMA-style causal transformer (hidden=256, layers=2, heads=hidden//128, mem_len=4096 tokens)."""
    return HyperContextEncoder(in_dim, **kwargs)


__all__ = ["HyperContextEncoder", "LSHConfig", "RMSNorm", "hyper", "hyper_attention", "xt_sincos_2d"]
