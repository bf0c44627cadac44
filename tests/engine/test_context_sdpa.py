"""Transformer-XL attention through ``scaled_dot_product_attention`` (issue 14) gives the explicit formula's outputs.

Kept with the engine tests because the change is for the engine's speed (fused attention on a GPU); the model's own
tests (tests/model/test_context_encoders.py) check streaming vs whole-window equality on the new path.
"""

import torch

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
