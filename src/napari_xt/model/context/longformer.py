"""Causal, streaming Longformer context encoder (Beltagy et al., 2020): sliding-window attention + global tokens.

Every layer is pre-norm ``x + Attn(LN(x))``, ``x + FFN(LN(x))``. Local tokens attend to **themselves and the previous
``window`` tokens** (a causal sliding window, kept across calls as a per-layer key/value cache of ``window`` tokens)
plus the ``n_global`` **global tokens**.

Global tokens attend to *every* token seen so far. To keep that exact with a fixed-size memory, a global token's
attention query in each layer is a learned vector (not a function of the global token's own state), so its attention
over all earlier tokens reduces to running softmax accumulators (max, denominator, numerator) per layer, head and
global token. The global token's state at token ``t`` is ``G_{l+1}(t) = G_l(t) + W_o Attn(q_g^l, tokens <= t)``
followed by the shared FFN; token ``t`` reads ``G_l(t)``, which depends only on tokens ``<= t``, so the whole encoder is
causal and streaming region by region gives the same outputs as a whole-window call (whatever the window length).

Memory (fixed size)::

    {"k", "v":   [layers, B, window, hidden]          last `window` keys/values per layer, right-aligned,
     "count":    []  long                              tokens seen (the cache holds min(count, window)),
     "g_max", "g_den": [layers, B, heads, n_global]   running softmax max / denominator (fp32),
     "g_num":    [layers, B, heads, n_global, d_head] running softmax numerator (fp32)}

:meth:`LongformerContextEncoder.summarize` rebuilds the global tokens' final state from the accumulators (mean over
the global tokens of their final-LayerNormed states): the window-level embedding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_context_encoder
from ._common import add_positions, check_inputs, sincos_2d
from .base import ContextEncoder

_NEG = torch.finfo(torch.float32).min  # running max before any token; exp(_NEG - x) == 0, never NaN


def prefix_global_attention(
    query: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    scale: float,
    chunk: int = 128,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Softmax attention of fixed queries over every key up to each position (carried state included).

    ``query`` ``[h, G, dh]``; ``k``, ``v`` ``[B, h, L, dh]``; state (max ``[B, h, G]``, den ``[B, h, G]``, num
    ``[B, h, G, dh]``), all fp32. Returns ``[B, h, G, L, dh]`` (the attention output as of each position) and the state
    after the last position. Works ``chunk`` positions at a time with an exact masked ``[chunk, chunk]`` block.
    """
    m, den, num = state
    b, h, L, dh = k.shape
    outs = []
    for c0 in range(0, L, chunk):
        c1 = min(L, c0 + chunk)
        c = c1 - c0
        a = torch.einsum("hgd,bhsd->bhgs", query, k[:, :, c0:c1]) * scale  # [B, h, G, c]
        causal = torch.ones(c, c, dtype=torch.bool, device=k.device).tril()  # [t, s]: s <= t
        scores = a[:, :, :, None, :].masked_fill(~causal, float("-inf"))  # [B, h, G, t, s]
        m_t = torch.maximum(m[..., None], scores.amax(-1))  # [B, h, G, t]
        w = torch.exp(scores - m_t[..., None])
        carry = torch.exp(m[..., None] - m_t)  # [B, h, G, t]
        den_t = carry * den[..., None] + w.sum(-1)
        num_t = carry[..., None] * num[:, :, :, None, :] + torch.einsum("bhgts,bhsd->bhgtd", w, v[:, :, c0:c1])
        outs.append(num_t / den_t[..., None])
        m, den, num = m_t[..., -1], den_t[..., -1], num_t[..., -1, :]
    return torch.cat(outs, dim=3), (m, den, num)


class LongformerLayer(nn.Module):
    def __init__(
        self, hidden: int, heads: int, window: int, n_global: int, ff_mult: int, dropout: float, block: int
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.hidden, self.heads, self.d_head = hidden, heads, hidden // heads
        self.window, self.n_global, self.block = window, n_global, max(1, int(block))
        self.scale = self.d_head**-0.5
        self.norm1 = nn.LayerNorm(hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.kv_proj = nn.Linear(hidden, 2 * hidden)
        self.out_proj = nn.Linear(hidden, hidden)
        # Global attention (Longformer keeps separate projections for it): learned query, own keys/values/output.
        self.global_query = nn.Parameter(torch.randn(n_global, hidden) * 0.02)
        self.global_kv = nn.Linear(hidden, 2 * hidden)
        self.global_out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(
            nn.Linear(hidden, ff_mult * hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * hidden, hidden)
        )
        self.drop = nn.Dropout(dropout)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # [..., H] -> [..., h, dh]
        return t.unflatten(-1, (self.heads, self.d_head))

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.ff(self.norm2(x)))

    def update_globals(self, g: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """``g`` ``[..., G, H]`` plus the pooled attention output ``[..., G, H]``, then the FFN."""
        return self.feed_forward(g + self.drop(self.global_out(pooled.to(g.dtype))))

    def forward(
        self,
        x: torch.Tensor,
        g: torch.Tensor,
        cache_k: torch.Tensor,
        cache_v: torch.Tensor,
        acc: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """x ``[B, L, H]``; g ``[B, L, G, H]`` (global states as of each token); caches ``[B, n_c, H]``."""
        b, L, H = x.shape
        n_c = cache_k.shape[1]
        xn = self.norm1(x)
        q = self._heads(self.q_proj(xn)).transpose(1, 2)  # [B, h, L, dh]
        k_new, v_new = self.kv_proj(xn).chunk(2, dim=-1)
        k_all = self._heads(torch.cat([cache_k.to(x.dtype), k_new], dim=1)).transpose(1, 2)  # [B, h, n_c+L, dh]
        v_all = self._heads(torch.cat([cache_v.to(x.dtype), v_new], dim=1)).transpose(1, 2)
        gk, gv = (self._heads(t) for t in self.kv_proj(self.norm1(g)).chunk(2, dim=-1))  # [B, L, G, h, dh]

        outs = []
        g_n = self.n_global
        for i0 in range(0, L, self.block):
            i1 = min(L, i0 + self.block)
            j0 = max(0, n_c + i0 - self.window)
            j1 = n_c + i1
            qb = i1 - i0
            # One fused attention call (scaled_dot_product_attention: flash / memory-efficient kernels on a GPU, the
            # fused CPU kernel otherwise) over the block's local keys followed by every query's own global keys
            # (the global state differs per token); a boolean mask lets each query see its causal band and its own
            # G global keys. The same softmax over the same scores as the explicit formula it replaced
            # (tests/engine/test_context_sdpa.py).
            qi = torch.arange(i0, i1, device=x.device)[:, None] + n_c
            kj = torch.arange(j0, j1, device=x.device)[None, :]
            dist = qi - kj
            band = (dist >= 0) & (dist <= self.window)  # [qb, n_loc]
            own = torch.eye(qb, dtype=torch.bool, device=x.device).repeat_interleave(g_n, dim=1)  # [qb, qb * G]
            g_keys = gk[:, i0:i1].permute(0, 3, 1, 2, 4).reshape(b, self.heads, qb * g_n, self.d_head)
            g_vals = gv[:, i0:i1].permute(0, 3, 1, 2, 4).reshape(b, self.heads, qb * g_n, self.d_head)
            outs.append(F.scaled_dot_product_attention(
                q[:, :, i0:i1], torch.cat([k_all[:, :, j0:j1], g_keys], dim=2),
                torch.cat([v_all[:, :, j0:j1], g_vals], dim=2), attn_mask=torch.cat([band, own], dim=1),
                dropout_p=self.drop.p if self.training else 0.0, scale=self.scale))
        att = torch.cat(outs, dim=2).transpose(1, 2).reshape(b, L, H)

        # Global tokens: learned queries over every token so far (running softmax state carried in memory).
        pk, pv = (self._heads(t).transpose(1, 2).float() for t in self.global_kv(xn).chunk(2, dim=-1))
        gq = self._heads(self.global_query).transpose(0, 1).float()  # [h, G, dh]
        pooled, acc = prefix_global_attention(gq, pk, pv, acc, self.scale)  # [B, h, G, L, dh]
        pooled = pooled.permute(0, 3, 2, 1, 4).reshape(b, L, self.n_global, H)

        x = self.feed_forward(x + self.drop(self.out_proj(att)))
        g = self.update_globals(g, pooled)
        return x, g, k_new, v_new, acc

    def pooled_from_state(self, acc: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Global attention output after the last token seen, ``[B, G, H]``, from the running state."""
        _, den, num = acc
        out = num / den.clamp_min(torch.finfo(den.dtype).tiny)[..., None]  # zero before any token
        return out.transpose(1, 2).reshape(num.shape[0], self.n_global, self.hidden)


class LongformerContextEncoder(ContextEncoder):
    """Causal sliding-window attention with learned global tokens, streamed with a fixed-size memory."""

    causal = True

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        layers: int = 2,
        heads: int = 4,
        window: int = 512,
        n_global: int = 1,
        dropout: float = 0.0,
        ff_mult: int = 4,
        pos_2d: bool = True,
        block: int = 256,
        detach_memory: bool = True,
    ) -> None:
        super().__init__()
        if window < 0 or n_global < 1:
            raise ValueError(f"need window >= 0 and n_global >= 1, got window={window}, n_global={n_global}")
        self.in_dim, self.out_dim = int(in_dim), int(hidden)
        self.hidden, self.n_layers, self.heads = int(hidden), int(layers), int(heads)
        self.window, self.n_global = int(window), int(n_global)
        self.pos_2d, self.detach_memory = bool(pos_2d), bool(detach_memory)
        self.input_proj = nn.Linear(self.in_dim, self.hidden)
        self.global_tokens = nn.Parameter(torch.randn(self.n_global, self.hidden) * 0.02)
        self.layers = nn.ModuleList(
            LongformerLayer(self.hidden, self.heads, self.window, self.n_global, ff_mult, dropout, block)
            for _ in range(self.n_layers)
        )
        self.norm = nn.LayerNorm(self.hidden)

    def init_memory(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        dtype = dtype or torch.float32
        n, h, g, dh = self.n_layers, self.heads, self.n_global, self.hidden // self.heads
        f32 = torch.float32
        return {
            "k": torch.zeros(n, batch, self.window, self.hidden, device=device, dtype=dtype),
            "v": torch.zeros(n, batch, self.window, self.hidden, device=device, dtype=dtype),
            "count": torch.zeros((), device=device, dtype=torch.long),
            "g_max": torch.full((n, batch, h, g), _NEG, device=device, dtype=f32),
            "g_den": torch.zeros(n, batch, h, g, device=device, dtype=f32),
            "g_num": torch.zeros(n, batch, h, g, dh, device=device, dtype=f32),
        }

    def forward(
        self, tokens: torch.Tensor, memory: dict[str, torch.Tensor], positions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_inputs(tokens, positions, self.in_dim)
        if memory["k"].shape[1] != tokens.shape[0]:
            raise ValueError(f"memory is for batch {memory['k'].shape[1]}, tokens have batch {tokens.shape[0]}")
        mem = {key: t.detach() for key, t in memory.items()} if self.detach_memory else memory
        n_c = min(int(mem["count"]), self.window)  # one host sync per call
        x = self.input_proj(tokens)
        if self.pos_2d:
            x = add_positions(x, sincos_2d(positions.to(x.device), self.hidden, x.dtype))
        b, L, _ = x.shape
        g = self.global_tokens.to(x.dtype)[None, None].expand(b, L, -1, -1)
        new: dict[str, list[torch.Tensor]] = {"k": [], "v": [], "g_max": [], "g_den": [], "g_num": []}
        for i, layer in enumerate(self.layers):
            cache_k = mem["k"][i, :, self.window - n_c :]
            cache_v = mem["v"][i, :, self.window - n_c :]
            acc = (mem["g_max"][i], mem["g_den"][i], mem["g_num"][i])
            x, g, k_new, v_new, acc = layer(x, g, cache_k, cache_v, acc)
            new["k"].append(self._push(mem["k"][i], k_new))
            new["v"].append(self._push(mem["v"][i], v_new))
            for key, t in zip(("g_max", "g_den", "g_num"), acc):
                new[key].append(t)
        out = self.norm(x)
        new_memory = {key: torch.stack(ts) for key, ts in new.items()}
        new_memory["count"] = mem["count"] + L
        return out, new_memory

    def _layers(self) -> Iterable[LongformerLayer]:
        return cast("Iterable[LongformerLayer]", self.layers)

    def _push(self, cache: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Append ``new`` ``[B, L, H]`` to a right-aligned cache ``[B, window, H]``, keep the last ``window``."""
        if self.window == 0:
            return cache
        return torch.cat([cache, new.to(cache.dtype)], dim=1)[:, -self.window :]

    def summarize(self, memory: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final state of the global tokens after the last token seen (final LayerNorm, mean over global tokens)."""
        b = memory["k"].shape[1]
        g = self.global_tokens[None].expand(b, -1, -1)
        for i, layer in enumerate(self._layers()):
            acc = (memory["g_max"][i], memory["g_den"][i], memory["g_num"][i])
            g = layer.update_globals(g, layer.pooled_from_state(acc))
        return self.norm(g).mean(dim=1)


@register_context_encoder("longformer")
def longformer(in_dim: int, **kwargs: Any) -> LongformerContextEncoder:
    """Causal Longformer: hidden=256, layers=2, heads=4, window=512, n_global=1, dropout=0, ff_mult=4, pos_2d=True."""
    return LongformerContextEncoder(in_dim, **kwargs)


__all__ = ["LongformerContextEncoder", "LongformerLayer", "longformer", "prefix_global_attention"]
