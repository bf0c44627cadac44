"""XTModel: every registered context encoder x head on non-square, non-divisible inputs; streaming == whole image.

Parametrised over the registry, so encoders and heads added later are tested here automatically.
"""

from __future__ import annotations

import pytest
import torch

import napari_xt.model  # noqa: F401  (registers everything importable)
from napari_xt.model import ConfigError, XTConfig, build_model
from napari_xt.model.context.base import ContextEncoder
from napari_xt.model.registry import list_context_encoders, list_heads
from napari_xt.model.tokenize import RegionGrid, cut_regions, paste_regions

H, W = 150, 217  # non-square, divisible by nothing useful
HEAD_OPTS = {"classification": {"num_classes": 4}, "segmentation": {"num_classes": 3}, "detection": {"num_classes": 2}}


def config(context="none", heads=None, **kw):
    base = dict(region_encoder="tiny", region_size=128, sub_region_size=64, context_encoder=context,
                heads=heads if heads is not None else {"segmentation": {"num_classes": 3}})
    return XTConfig(**{**base, **kw})


def make(context="none", heads=None, **kw):
    torch.manual_seed(0)
    return build_model(config(context, heads, **kw), pretrained=False).eval()


def check_outputs(out, heads, b, h, w):
    for name in heads:
        if name == "classification":
            assert out[name].shape == (b, HEAD_OPTS[name]["num_classes"])
        elif name == "segmentation":
            assert out[name].shape == (b, HEAD_OPTS[name]["num_classes"], h, w)
        elif name == "detection":
            k = HEAD_OPTS[name]["num_classes"]
            hs, ws = -(-h // 4), -(-w // 4)
            assert out[name]["heatmap"].shape == (b, k, hs, ws)
            assert out[name]["size"].shape == out[name]["offset"].shape == (b, 2, hs, ws)
        for v in (out[name].values() if isinstance(out[name], dict) else [out[name]]):
            assert torch.isfinite(v).all()


@pytest.mark.parametrize("head", list_heads())
@pytest.mark.parametrize("context", list_context_encoders())
def test_matrix_shapes(context, head):
    opts = {head: HEAD_OPTS.get(head, {"num_classes": 2})}
    model = make(context, opts)
    assert isinstance(model.context_encoder, ContextEncoder)
    with torch.no_grad():
        out = model(torch.randn(2, 3, H, W))
    assert set(out) == {head}
    if head in HEAD_OPTS:
        check_outputs(out, [head], 2, H, W)


def test_all_heads_at_once_and_backward():
    model = make("none", HEAD_OPTS).train()
    out = model(torch.randn(1, 3, H, W))
    check_outputs(out, HEAD_OPTS, 1, H, W)
    loss = out["segmentation"].mean() + out["classification"].mean() + out["detection"]["heatmap"].mean()
    loss.backward()
    assert all(p.grad is not None for p in model.region_encoder.parameters())


@pytest.mark.parametrize("in_chans", [1, 2, 5])
def test_multi_channel_inputs(in_chans):
    model = make("none", {"segmentation": {"num_classes": 2}}, in_chans=in_chans)
    assert len(model.config.mean) == in_chans
    with torch.no_grad():
        out = model(torch.randn(1, in_chans, 70, 90))
    assert out["segmentation"].shape == (1, 2, 70, 90)
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(1, in_chans + 1, 70, 90))


def test_geometry_properties():
    model = make()
    assert model.token_stride == 32 and model.token_grid == (4, 4) and model.tokens_per_region == 16
    feats = model.encode_regions(torch.randn(3, 3, 128, 128))
    assert feats.tokens.shape == (3, 16, model.region_encoder.out_dim) and feats.grid == (4, 4)
    assert [m.shape[-1] for m in feats.maps] == [32, 16, 8, 4]


def test_overlaps():
    model = make("none", HEAD_OPTS, region_size=192, sub_region_size=128, overlap=64, region_overlap=32)
    with torch.no_grad():
        out = model(torch.randn(1, 3, H, W))
    check_outputs(out, HEAD_OPTS, 1, H, W)
    with pytest.raises(ConfigError, match="multiple of 64"):
        make(overlap=16)
    with pytest.raises(ConfigError, match="multiple of 8"):
        make(region_overlap=4)


def test_whole_image_as_one_region_is_a_plain_tiled_forward():
    """With one region and no context, the segmentation equals decoding that region directly."""
    model = make("none", region_size=256)
    x = torch.randn(1, 3, 200, 230)
    with torch.no_grad():
        seg = model(x)["segmentation"]
        region = cut_regions(x, RegionGrid((200, 230), 256), "reflect")[:, 0]
        feats = model.encode_regions(region)
        pos = model.region_positions([(0, 0)])
        ctx, _ = model.step_context(feats, model.init_memory(1), pos)
        direct = model.decode(feats, ctx)["segmentation"][..., :200, :230]
    torch.testing.assert_close(seg, direct)


def _causal():
    names = []
    for name in list_context_encoders():
        enc = make(name).context_encoder
        if enc.causal:
            names.append(name)
    return names


@pytest.mark.parametrize("context", _causal())
def test_streaming_matches_whole_image(context):
    """The engine's region-by-region path gives the whole-image outputs (causal encoders)."""
    model = make(context, {"segmentation": {"num_classes": 3}, "classification": {"num_classes": 2}})
    x = torch.randn(1, 3, H, W)
    grid = model.region_grid((H, W))
    with torch.no_grad():
        whole = model(x)
        regions = cut_regions(x, grid, "reflect")[0]
        memory = model.init_memory(1)
        segs = []
        for i in range(len(grid)):  # one region per call, the engine's worst case
            out, memory = model.stream_regions(regions[i : i + 1], [grid.row_col(i)], memory)
            segs.append(out["segmentation"])
        seg = paste_regions(torch.cat(segs)[None], grid)
        logits = model.classify(memory)
    torch.testing.assert_close(seg, whole["segmentation"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, whole["classification"], atol=1e-4, rtol=1e-4)


def test_token_pooled_classification():
    model = make("none", {"classification": {"num_classes": 3, "pool": "tokens"}})
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out["classification"].shape == (2, 3)
    with pytest.raises(ValueError, match="token_mean"):
        model.classify(model.init_memory(2))


def test_named_heads_with_type():
    model = make("none", {"tissue": {"type": "segmentation", "num_classes": 2},
                          "nuclei": {"type": "segmentation", "num_classes": 4}})
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 80))
    assert out["tissue"].shape == (1, 2, 64, 80) and out["nuclei"].shape == (1, 4, 64, 80)


def test_step_context_batches_windows():
    model = make()
    feats = model.encode_regions(torch.randn(4, 3, 128, 128))
    pos = model.region_positions([(0, 0), (0, 1)])
    ctx, _ = model.step_context(feats, model.init_memory(2), pos, batch=2)
    assert ctx.shape == (4, 16, model.context_encoder.out_dim)
    with pytest.raises(ValueError, match="positions"):
        model.step_context(feats, model.init_memory(2), pos[:5], batch=2)
