"""Attention kernels for the Hyper context encoder: exact causal attention with log-sum-exp bookkeeping and an
approximate, sub-quadratic HyperAttention-style path (angular LSH, sorted blocks, sampled columns) for long sequences.

Kept apart from the layers so the numerics can be read and tested on their own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


# -------------------------------------------------------------------------------------------------------- attention
def _attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact attention returning (output, log-sum-exp ``[..., Lq, 1]``); ``mask`` True = may attend.

    Rows with nothing to attend to give output 0 and lse -inf (so they vanish when merged).
    """
    scores = (q @ k.transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, NEG_INF)
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)
    safe = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    probs = torch.exp(scores - safe)  # masked entries: exp(-inf) = 0
    return probs @ v, lse


_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
EXACT_CHUNK = 1024


def _exact_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
               causal: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (output, lse) without materialising more than ``EXACT_CHUNK`` query rows of scores at a time.

    ``causal`` needs as many queries as keys (query i sees keys 0..i). On CPU, torch's fused flash kernel (which
    returns the log-sum-exp) is used when available; otherwise query chunks, skipping keys a causal chunk cannot see.
    """
    if _CPU_FLASH is not None and q.device.type == "cpu" and q.dtype == torch.float32:
        try:
            out, lse = _CPU_FLASH(q, k, v, 0.0, causal, scale=scale)[:2]
            return out, lse.unsqueeze(-1).to(out.dtype)
        except Exception:  # private op: any signature/dtype/layout problem falls back below
            pass
    n = q.shape[2]
    outs, lses = [], []
    for start in range(0, n, EXACT_CHUNK):
        end = min(n, start + EXACT_CHUNK)
        if causal:
            mask = torch.ones(end - start, end, dtype=torch.bool, device=q.device).tril(diagonal=start)
            o, lse = _attention_lse(q[:, :, start:end], k[:, :, :end], v[:, :, :end], scale, mask)
        else:
            o, lse = _attention_lse(q[:, :, start:end], k, v, scale)
        outs.append(o)
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def _merge(o1: torch.Tensor, l1: torch.Tensor, o2: torch.Tensor, l2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine two attentions over disjoint key sets from their outputs and log-sum-exps."""
    m = torch.maximum(l1, l2)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w1, w2 = torch.exp(l1 - m), torch.exp(l2 - m)
    total = w1 + w2
    out = (o1 * w1 + o2 * w2) / total.clamp_min(torch.finfo(total.dtype).tiny)
    return out, m + torch.log(total)


def _gray_rank(bits: torch.Tensor) -> torch.Tensor:
    """Bucket index of sign bits ``[..., P]`` in Gray-code order (neighbouring buckets differ in one hyperplane)."""
    p = bits.shape[-1]
    code = (bits.long() << torch.arange(p, device=bits.device)).sum(-1)  # bit i = side of hyperplane i
    rank = code.clone()
    shift = 1
    while shift < p:  # inverse Gray code: rank = code ^ (code >> 1) ^ (code >> 2) ^ ...
        rank = rank ^ (rank >> shift)
        shift <<= 1
    return rank


class LSHConfig:
    """Parameters of the approximate path (plain attributes; kept out of the state dict)."""

    def __init__(self, min_seq_len: int, block_size: int, sample_size: int, projections: torch.Tensor,
                 seed: int) -> None:
        self.min_seq_len = int(min_seq_len)
        self.block_size = int(block_size)
        self.sample_size = int(sample_size)
        self.projections = projections  # [head_dim, P]
        self.seed = int(seed)


def _noncausal_lsh(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                   cfg: LSHConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate full (non-causal) attention of ``q`` ``[b, h, n, d]`` over ``k``/``v`` ``[b, h, m, d]``.

    HyperAttention's two parts, computed on disjoint key sets and merged through their log-sum-exps:

    1. sortLSH block diagonal: queries and keys are hashed with ``P`` random hyperplanes (angular LSH, buckets in
       Gray-code order), sorted by bucket and cut into the same number of blocks; each query attends exactly to the
       keys of its block (where the large entries of ``QK^T`` concentrate).
    2. the rest of the row, estimated from ``sample_size`` uniformly sampled keys (those in the query's own block
       excluded), each weighted by ``m / sample_size``.

    Query sets up to ``min_seq_len`` are computed exactly (the reference: below it), so a streamed region of up to
    ``min_seq_len`` tokens attends to the cache exactly.
    """
    b, h, n, d = q.shape
    m = k.shape[2]
    if n <= cfg.min_seq_len or m <= cfg.block_size:
        return _exact_lse(q, k, v, scale, causal=False)
    proj = cfg.projections.to(device=q.device, dtype=q.dtype)
    q_idx = torch.sort(_gray_rank(q @ proj > 0), dim=2, stable=True).indices  # [b, h, n]
    k_idx = torch.sort(_gray_rank(k @ proj > 0), dim=2, stable=True).indices  # [b, h, m]
    gather = lambda x, idx: x.gather(2, idx[..., None].expand(*idx.shape, x.shape[-1]))
    qs, ks, vs = gather(q, q_idx), gather(k, k_idx), gather(v, k_idx)

    n_blocks = math.ceil(m / cfg.block_size)
    kb = cfg.block_size
    qb = math.ceil(n / n_blocks)
    kpad, qpad = n_blocks * kb - m, n_blocks * qb - n
    ks_p = F.pad(ks, (0, 0, 0, kpad))
    vs_p = F.pad(vs, (0, 0, 0, kpad))
    qs_p = F.pad(qs, (0, 0, 0, qpad))
    key_valid = (torch.arange(n_blocks * kb, device=q.device) < m).view(n_blocks, 1, kb)
    o_blk, l_blk = _attention_lse(
        qs_p.view(b, h, n_blocks, qb, d), ks_p.view(b, h, n_blocks, kb, d), vs_p.view(b, h, n_blocks, kb, d),
        scale, key_valid,
    )
    o_blk = o_blk.reshape(b, h, n_blocks * qb, d)[:, :, :n]
    l_blk = l_blk.reshape(b, h, n_blocks * qb, 1)[:, :, :n]

    s = cfg.sample_size
    if s > 0 and n_blocks > 1:
        gen = torch.Generator(device=q.device).manual_seed(cfg.seed)
        sampled = torch.randint(m, (b, h, s), device=q.device, generator=gen)  # positions in the sorted keys
        k_s, v_s = gather(ks, sampled), gather(vs, sampled)
        q_block = torch.arange(n, device=q.device) // qb  # block of each sorted query
        outside = q_block.view(1, 1, n, 1) != (sampled // kb).view(b, h, 1, s)
        o_smp, l_smp = _attention_lse(qs, k_s, v_s, scale, outside)
        l_smp = l_smp + math.log(m / s)
        o_blk, l_blk = _merge(o_blk, l_blk, o_smp, l_smp)

    inv = torch.argsort(q_idx, dim=2)
    return gather(o_blk, inv), gather(l_blk, inv)


def _causal_lsh(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                cfg: LSHConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention of ``n`` queries over the same ``n`` positions, recursively split in halves.

    ``[[A, 0], [B, C]]``: the diagonal halves ``A`` and ``C`` are causal again (recursed together as a doubled
    batch), the off-diagonal ``B`` (second-half queries, first-half keys) is unmasked and goes to
    :func:`_noncausal_lsh`. Exact once ``n <= min_seq_len``.
    """
    n = q.shape[2]
    if n <= cfg.min_seq_len:
        return _exact_lse(q, k, v, scale, causal=True)
    if n % 2:  # an extra all-zero position at the end changes nothing before it (causal)
        q, k, v = (F.pad(x, (0, 0, 0, 1)) for x in (q, k, v))
    half = q.shape[2] // 2
    b = q.shape[0]
    stack = lambda x: torch.cat([x[:, :, :half], x[:, :, half:]], dim=0)
    o_d, l_d = _causal_lsh(stack(q), stack(k), stack(v), scale, cfg)
    o_off, l_off = _noncausal_lsh(q[:, :, half:], k[:, :, :half], v[:, :, :half], scale, cfg)
    o_low, l_low = _merge(o_d[b:], l_d[b:], o_off, l_off)
    out = torch.cat([o_d[:b], o_low], dim=2)[:, :, :n]
    lse = torch.cat([l_d[:b], l_low], dim=2)[:, :, :n]
    return out, lse


def hyper_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: LSHConfig,
                    scale: float | None = None) -> torch.Tensor:
    """Causal attention of the last ``Lq`` positions (``q`` ``[B, H, Lq, d]``) over ``Lk >= Lq`` keys.

    Query ``j`` sits at position ``Lk - Lq + j`` and sees keys ``0 .. Lk - Lq + j`` (a cache prefix plus the causal
    part of its own chunk). With ``Lk <= cfg.min_seq_len`` this is exact (SDPA). Above, the approximate path runs in
    fp32: the chunk's own causal part by :func:`_causal_lsh`, the cache prefix by :func:`_noncausal_lsh` (exact
    whenever at most ``min_seq_len`` queries ask, e.g. region-by-region streaming), merged by log-sum-exp.

    The approximation keeps, for every query, the exact weights of the keys that fall in its LSH block and of its
    causal neighbourhood down to ``min_seq_len``, and replaces the remaining mass by a uniform-sample estimate; like
    HyperAttention it is accurate when attention is dominated by a few large entries and degrades towards a
    sampled mean for flat attention (see tests/model/test_hyper.py for the measured error).
    """
    lq, lk = q.shape[2], k.shape[2]
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    prev = lk - lq
    if prev < 0:
        raise ValueError(f"{lq} queries but only {lk} keys")
    if lk <= cfg.min_seq_len:
        if prev == 0:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril(diagonal=prev)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    dtype = q.dtype
    qf, kf, vf = q.float(), k.float(), v.float()
    out, lse = _causal_lsh(qf, kf[:, :, prev:], vf[:, :, prev:], scale, cfg)
    if prev:
        o_p, l_p = _noncausal_lsh(qf, kf[:, :, :prev], vf[:, :, :prev], scale, cfg)
        out, lse = _merge(out, lse, o_p, l_p)
    return out.to(dtype)
