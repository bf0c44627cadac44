"""Mamba context encoders (Gu & Dao, 2023) in pure PyTorch, streaming with a fixed-size recurrent state.

Each layer is the standard pre-norm residual block ``x + Mamba(RMSNorm(x))`` with the parameter names of the
reference ``mamba_ssm`` package, so released weights map one to one::

    layers.{i}.norm.weight                      RMSNorm (weight only, no bias)
    layers.{i}.mixer.in_proj.weight             [2*d_inner, d_model]
    layers.{i}.mixer.conv1d.{weight,bias}       depthwise causal conv, [d_inner, 1, d_conv]
    layers.{i}.mixer.x_proj.weight              [dt_rank + 2*d_state, d_inner]
    layers.{i}.mixer.dt_proj.{weight,bias}      [d_inner, dt_rank]
    layers.{i}.mixer.A_log / D                  [d_inner, d_state] / [d_inner]
    layers.{i}.mixer.out_proj.weight            [d_model, d_inner]
    norm_f.weight                               final RMSNorm

plus ``input_proj`` (in_dim -> d_model) in front. The selective scan runs in fp32, vectorised over batch, channels and
state, either as a step-by-step recurrence (``scan="sequential"``, fastest on CPU) or as a chunked log-depth parallel
scan (``scan="parallel"``, fewer kernel launches on GPU); ``scan="auto"`` picks by device. When the ``mamba_ssm``
package is importable and the tokens are on CUDA, its fused ``selective_scan_fn`` kernel is used instead (with the
carried state added analytically, since that kernel starts from a zero state). ``mamba_ssm`` is not a dependency of
napari-xt; without it the PyTorch scan is used everywhere.

Memory (fixed size)::

    {"conv":  [layers, B, d_inner, d_conv - 1]   last inputs of each depthwise conv,
     "ssm":   [layers, B, d_inner, d_state]      SSM hidden state (always fp32),
     "sum":   [B, d_model] fp32, "count": [] long  running mean of the outputs, for summarize()}

``mamba`` is causal: region-by-region streaming equals a whole-window pass. ``mamba_bidirectional`` runs every other
layer on the reversed sequence, so it is *not* causal and processes whole windows only: calling it again with a
memory that has already seen tokens raises :class:`StreamingNotSupportedError`.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_context_encoder
from ._common import (
    add_positions,
    check_inputs,
    init_running_mean,
    inverse_softplus,
    running_mean,
    sincos_2d,
    update_running_mean,
)
from .base import ContextEncoder

try:  # optional fused CUDA kernel; never required
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _cuda_selective_scan_fn
except Exception:  # ImportError, or a broken CUDA build
    _cuda_selective_scan_fn = None

HAS_MAMBA_SSM = _cuda_selective_scan_fn is not None


class StreamingNotSupportedError(RuntimeError):
    """A non-causal encoder was asked to continue a window from a memory that has already seen tokens."""


# ----------------------------------------------------------------------------------------------------- selective scan
def selective_scan_sequential(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    h0: torch.Tensor,
    chunk_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recurrence ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t``, ``y_t = C_t · h_t``, one step at a time.

    Shapes: x, dt ``[b, L, d]``; A ``[d, n]``; B, C ``[b, L, n]``; h0 ``[b, d, n]``. Returns y ``[b, L, d]`` and the
    last state ``[b, d, n]``. Decays and inputs are precomputed ``chunk_size`` steps at a time (bounded memory), so
    the Python loop only does one multiply-add per step. Fastest on CPU.
    """
    h = h0
    ys = []
    for t0 in range(0, x.shape[1], chunk_size):
        t1 = min(x.shape[1], t0 + chunk_size)
        decay = torch.exp(dt[:, t0:t1, :, None] * A)  # [b, T, d, n]
        inp = (dt[:, t0:t1] * x[:, t0:t1])[..., None] * B[:, t0:t1, None, :]  # [b, T, d, n]
        hs = []
        for t in range(t1 - t0):
            h = torch.addcmul(inp[:, t], decay[:, t], h)
            hs.append(h)
        ys.append(torch.einsum("btdn,btn->btd", torch.stack(hs, dim=1), C[:, t0:t1]))
    y = torch.cat(ys, dim=1) if ys else x.new_zeros(x.shape)
    return y, h


def selective_scan_parallel(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    h0: torch.Tensor,
    chunk_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same result as :func:`selective_scan_sequential` by a log-depth (Hillis-Steele) scan inside each chunk.

    The pairs (decay ``a_t``, input ``u_t``) are combined with ``(a, u) o (a', u') = (a a', a u' + u)`` in
    ``log2(chunk_size)`` vectorised passes; the carried state enters as ``h_t = u_t + (prod_{s<=t} a_s) h_0``. Only
    products of decays in (0, 1] appear, so nothing overflows. Few kernel launches: the better choice on GPU.
    """
    h = h0
    ys = []
    for t0 in range(0, x.shape[1], chunk_size):
        t1 = min(x.shape[1], t0 + chunk_size)
        T = t1 - t0
        a = torch.exp(dt[:, t0:t1, :, None] * A)  # [b, T, d, n]
        u = (dt[:, t0:t1] * x[:, t0:t1])[..., None] * B[:, t0:t1, None, :]
        k = 1
        while k < T:
            u = torch.cat([u[:, :k], torch.addcmul(u[:, k:], a[:, k:], u[:, :-k])], dim=1)
            a = torch.cat([a[:, :k], a[:, k:] * a[:, :-k]], dim=1)
            k *= 2
        hs = torch.addcmul(u, a, h[:, None])
        ys.append(torch.einsum("btdn,btn->btd", hs, C[:, t0:t1]))
        h = hs[:, -1]
    y = torch.cat(ys, dim=1) if ys else x.new_zeros(x.shape)
    return y, h


def _selective_scan_cuda(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mamba_ssm`` fused kernel (zero initial state) plus the exact contribution of the carried state ``h0``."""
    u = x.transpose(1, 2).contiguous()  # [b, d, L]
    delta = dt.transpose(1, 2).contiguous()
    y, last = _cuda_selective_scan_fn(
        u,
        delta,
        A.contiguous(),
        B.transpose(1, 2).contiguous(),  # [b, n, L]
        C.transpose(1, 2).contiguous(),
        D=None,
        z=None,
        delta_bias=None,
        delta_softplus=False,
        return_last_state=True,
    )  # y [b, d, L], last [b, d, n]
    S = torch.cumsum(dt[..., None] * A, dim=1)  # [b, L, d, n]
    carried = torch.exp(S) * h0[:, None]  # state contribution of h0 at each step
    y = y.transpose(1, 2) + torch.einsum("bldn,bln->bld", carried, C)
    return y, last + carried[:, -1]


# ---------------------------------------------------------------------------------------------------------- modules
class RMSNorm(nn.Module):
    """Root-mean-square norm with a weight and no bias (as in ``mamba_ssm``)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class MambaMixer(nn.Module):
    """One selective-SSM mixer with the ``mamba_ssm.modules.mamba_simple.Mamba`` parameter layout."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        scan: str = "auto",
        chunk_size: int = 128,
    ) -> None:
        super().__init__()
        if scan not in ("auto", "parallel", "sequential"):
            raise ValueError(f"scan must be 'auto', 'parallel' or 'sequential', got {scan!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        self.scan, self.chunk_size = scan, int(chunk_size)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # Reference initialisation: dt log-uniform in [dt_min, dt_max] through softplus, S4D-real A = -(1..n).
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus(dt.clamp(min=dt_init_floor)))
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward(
        self, hidden: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``hidden`` ``[b, L, d_model]``; states ``[b, d_inner, d_conv-1]`` and ``[b, d_inner, d_state]``."""
        L = hidden.shape[1]
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # [b, L, d_inner] each
        # Causal depthwise conv continued from the carried inputs.
        xc = torch.cat([conv_state.to(x.dtype), x.transpose(1, 2)], dim=2)  # [b, d_inner, d_conv-1+L]
        new_conv_state = xc[:, :, xc.shape[2] - (self.d_conv - 1) :]
        x = F.silu(F.conv1d(xc, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner)).transpose(1, 2)
        dt_in, Bm, Cm = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt_in).float())  # [b, L, d_inner] (bias inside, as delta_bias in the kernel)
        A = -torch.exp(self.A_log.float())
        xf, Bf, Cf, h0 = x.float(), Bm.float(), Cm.float(), ssm_state.float()
        if L == 0:
            y, h = xf, h0
        elif HAS_MAMBA_SSM and hidden.is_cuda:
            y, h = _selective_scan_cuda(xf, dt, A, Bf, Cf, h0)
        elif self.scan == "parallel" or (self.scan == "auto" and hidden.is_cuda):
            y, h = selective_scan_parallel(xf, dt, A, Bf, Cf, h0, self.chunk_size)
        else:
            y, h = selective_scan_sequential(xf, dt, A, Bf, Cf, h0, self.chunk_size)
        y = y + xf * self.D.float()
        y = (y * F.silu(z.float())).to(hidden.dtype)
        return self.out_proj(y), new_conv_state, h


class MambaBlock(nn.Module):
    """Pre-norm residual block ``x + mixer(norm(x))`` (names ``norm`` and ``mixer`` as in ``mamba_ssm``)."""

    def __init__(self, d_model: int, norm_eps: float = 1e-5, **mixer_kwargs: Any) -> None:
        super().__init__()
        self.norm = RMSNorm(d_model, eps=norm_eps)
        self.mixer = MambaMixer(d_model, **mixer_kwargs)

    def forward(
        self, x: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, conv_state, ssm_state = self.mixer(self.norm(x), conv_state, ssm_state)
        return x + out, conv_state, ssm_state


class MambaContextEncoder(ContextEncoder):
    """Causal stack of Mamba blocks over the region tokens, streamed with a fixed-size recurrent state."""

    causal = True
    bidirectional = False

    def __init__(
        self,
        in_dim: int,
        d_model: int = 256,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        layers: int = 2,
        dt_rank: int | None = None,
        pos_2d: bool = False,
        scan: str = "auto",
        chunk_size: int = 128,
        norm_eps: float = 1e-5,
        detach_memory: bool = True,
    ) -> None:
        super().__init__()
        self.in_dim, self.out_dim = int(in_dim), int(d_model)
        self.d_model, self.n_layers = int(d_model), int(layers)
        self.pos_2d, self.detach_memory = bool(pos_2d), bool(detach_memory)
        self.input_proj = nn.Linear(self.in_dim, self.d_model)
        self.layers = nn.ModuleList(
            MambaBlock(
                self.d_model,
                norm_eps=norm_eps,
                d_state=d_state,
                d_conv=d_conv,
                expand=expand,
                dt_rank=dt_rank,
                scan=scan,
                chunk_size=chunk_size,
            )
            for _ in range(self.n_layers)
        )
        self.norm_f = RMSNorm(self.d_model, eps=norm_eps)
        self.d_inner, self.d_state, self.d_conv = self._blocks()[0].mixer.d_inner, d_state, d_conv

    def _blocks(self) -> list[MambaBlock]:
        return [cast(MambaBlock, block) for block in self.layers]

    def init_memory(
        self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> dict[str, torch.Tensor]:
        dtype = dtype or torch.float32
        mem = {
            "conv": torch.zeros(self.n_layers, batch, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            "ssm": torch.zeros(self.n_layers, batch, self.d_inner, self.d_state, device=device, dtype=torch.float32),
        }
        mem.update(init_running_mean(batch, self.d_model, device))
        return mem

    def forward(
        self, tokens: torch.Tensor, memory: dict[str, torch.Tensor], positions: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        check_inputs(tokens, positions, self.in_dim)
        if self.bidirectional and int(memory["count"]) > 0:
            raise StreamingNotSupportedError(
                "mamba_bidirectional is not causal: it processes whole context windows only. Feed the window's "
                "tokens in one call, starting from init_memory() (use 'mamba' to stream region by region)."
            )
        x = self.input_proj(tokens)
        if self.pos_2d:
            x = add_positions(x, sincos_2d(positions.to(x.device), self.d_model, x.dtype))
        conv, ssm = memory["conv"], memory["ssm"]
        if self.detach_memory:
            conv, ssm = conv.detach(), ssm.detach()
        new_conv, new_ssm = [], []
        for i, block in enumerate(self.layers):
            if self.bidirectional and i % 2 == 1:
                # Backward direction over the whole window, from a zero state; its end state is meaningless.
                zc, zs = torch.zeros_like(conv[i]), torch.zeros_like(ssm[i])
                y, _, _ = block(x.flip(1), zc, zs)
                x = y.flip(1)
                new_conv.append(conv[i])
                new_ssm.append(ssm[i])
            else:
                x, c, s = block(x, conv[i], ssm[i])
                new_conv.append(c.to(conv.dtype))
                new_ssm.append(s.to(ssm.dtype))
        out = self.norm_f(x)
        total, count = update_running_mean(memory, out)
        return out, {"conv": torch.stack(new_conv), "ssm": torch.stack(new_ssm), "sum": total, "count": count}

    def summarize(self, memory: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean of every output token seen so far (running sum / count kept in memory)."""
        return running_mean(memory, self.norm_f.weight.dtype)


class BidirectionalMambaContextEncoder(MambaContextEncoder):
    """Mamba whose odd layers (1, 3, ...) run on the reversed window: every token sees the whole window.

    Not causal, so it cannot stream: one ``forward`` per window, from a fresh ``init_memory()``.
    """

    causal = False
    bidirectional = True


@register_context_encoder("mamba")
def mamba(in_dim: int, **kwargs: Any) -> MambaContextEncoder:
    """Causal Mamba: d_model=256, d_state=16, d_conv=4, expand=2, layers=2, scan='auto', chunk_size=128."""
    return MambaContextEncoder(in_dim, **kwargs)


@register_context_encoder("mamba_bidirectional")
def mamba_bidirectional(in_dim: int, **kwargs: Any) -> BidirectionalMambaContextEncoder:
    """Bidirectional Mamba (odd layers see the reversed window); whole windows only, ``causal = False``."""
    return BidirectionalMambaContextEncoder(in_dim, **kwargs)


__all__ = [
    "HAS_MAMBA_SSM",
    "BidirectionalMambaContextEncoder",
    "MambaBlock",
    "MambaContextEncoder",
    "MambaMixer",
    "RMSNorm",
    "StreamingNotSupportedError",
    "mamba",
    "mamba_bidirectional",
    "selective_scan_parallel",
    "selective_scan_sequential",
]
