"""Transformer-XL and Longformer attention through ``scaled_dot_product_attention`` (issue 14) give the explicit
formulas' outputs.

Kept with the engine tests because the change is for the engine's speed (fused attention on a GPU); the model's own
tests (tests/model/test_context_encoders.py) check streaming vs whole-window equality on the new path.
"""

import torch

from napari_xt.model.context.longformer import LongformerLayer
from napari_xt.model.context.xl import RelPartialLearnableAttention


def _explicit(attn: RelPartialLearnableAttention, x_all: torch.Tensor, n_mem: int) -> torch.Tensor:
    """The formula as written before issue 14: scores = (ac + bd) * scale, causal mask, fp32 softmax."""
    b, k_len, _ = x_all.shape
    L, h, dh = k_len - n_mem, attn.heads, attn.d_head
    q = attn.q_proj(x_all[:, n_mem:]).view(b, L, h, dh).transpose(1, 2)
    k, v = attn.kv_proj(x_all).view(b, k_len, 2, h, dh).permute(2, 0, 3, 1, 4)
    from napari_xt.model.context._common import sinusoid_1d

    r = attn.r_proj(sinusoid_1d(torch.arange(k_len), attn.hidden, x_all.dtype)).view(k_len, h, dh)
    ac = torch.einsum("bhid,bhjd->bhij", q + attn.u[None, :, None], k)
    bd_by_dist = torch.einsum("bhid,jhd->bhij", q + attn.v[None, :, None], r)
    distance = (torch.arange(L)[:, None] + n_mem) - torch.arange(k_len)[None, :]
    bd = torch.gather(bd_by_dist, -1, distance.clamp(0, k_len - 1).expand(b, h, -1, -1))
    scores = ((ac + bd) * attn.scale).masked_fill(distance < 0, float("-inf"))
    out = torch.softmax(scores.float(), -1) @ v
    return attn.out_proj(out.transpose(1, 2).reshape(b, L, attn.hidden))


def test_sdpa_attention_matches_the_explicit_formula():
    torch.manual_seed(0)
    for query_block in (512, 5):  # one block, and several blocks with masked tails
        attn = RelPartialLearnableAttention(32, 4, query_block=query_block).eval()
        with torch.no_grad():
            attn.u.normal_()
            attn.v.normal_()
            for n_mem in (0, 7):
                x = torch.randn(2, n_mem + 13, 32)
                torch.testing.assert_close(attn(x, n_mem), _explicit(attn, x, n_mem), rtol=1e-5, atol=1e-5)


def _longformer_explicit(layer: LongformerLayer, x, g, cache_k, cache_v):
    """The local + global attention of a Longformer layer as written before issue 14 (the attention part only)."""
    b, L, H = x.shape
    n_c = cache_k.shape[1]
    xn = layer.norm1(x)
    q = layer._heads(layer.q_proj(xn)).transpose(1, 2)
    k_new, v_new = layer.kv_proj(xn).chunk(2, dim=-1)
    k_all = layer._heads(torch.cat([cache_k, k_new], dim=1)).transpose(1, 2)
    v_all = layer._heads(torch.cat([cache_v, v_new], dim=1)).transpose(1, 2)
    gk, gv = (layer._heads(t) for t in layer.kv_proj(layer.norm1(g)).chunk(2, dim=-1))
    outs = []
    for i0 in range(0, L, layer.block):
        i1 = min(L, i0 + layer.block)
        j0, j1 = max(0, n_c + i0 - layer.window), n_c + i1
        local = torch.einsum("bhqd,bhkd->bhqk", q[:, :, i0:i1], k_all[:, :, j0:j1]) * layer.scale
        dist = (torch.arange(i0, i1)[:, None] + n_c) - torch.arange(j0, j1)[None, :]
        local = local.masked_fill((dist < 0) | (dist > layer.window), float("-inf"))
        glob = torch.einsum("bhqd,bqghd->bhqg", q[:, :, i0:i1], gk[:, i0:i1]) * layer.scale
        attn = torch.softmax(torch.cat([local, glob], dim=-1).float(), dim=-1)
        n_loc = j1 - j0
        out = attn[..., :n_loc] @ v_all[:, :, j0:j1]
        outs.append(out + torch.einsum("bhqg,bqghd->bhqd", attn[..., n_loc:], gv[:, i0:i1]))
    w = layer.out_proj  # its weights, not its (patched) forward
    return torch.nn.functional.linear(torch.cat(outs, dim=2).transpose(1, 2).reshape(b, L, H), w.weight, w.bias)


def test_longformer_sdpa_attention_matches_the_explicit_formula(monkeypatch):
    torch.manual_seed(0)
    for window, n_global, block, n_c in ((512, 1, 256, 0), (5, 2, 4, 3), (0, 3, 7, 0), (6, 1, 3, 6)):
        layer = LongformerLayer(32, 4, window, n_global, ff_mult=2, dropout=0.0, block=block).eval()
        x, g = torch.randn(2, 11, 32), torch.randn(2, 11, n_global, 32)
        cache_k, cache_v = torch.randn(2, n_c, 32), torch.randn(2, n_c, 32)
        seen = {}
        # the layer's attention output is what enters out_proj: capture it on both paths
        monkeypatch.setattr(layer.out_proj, "forward", lambda t, seen=seen, w=layer.out_proj: seen.setdefault(
            "att", torch.nn.functional.linear(t, w.weight, w.bias)))
        with torch.no_grad():
            layer(x, g, cache_k, cache_v, (torch.full((2, 4, n_global), -1e30), torch.zeros(2, 4, n_global),
                                           torch.zeros(2, 4, n_global, 8)))
            want = _longformer_explicit(layer, x, g, cache_k, cache_v)
        torch.testing.assert_close(seen["att"], want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(want, torch.nn.functional.linear(torch.zeros_like(x), layer.out_proj.weight,
                                                                   layer.out_proj.bias), atol=1e-3)
