"""Sub-region batching (``sub_batch``): a region's sub-regions go through the region encoder at most N at a time,
which bounds the peak memory of a ViT-L/H and must not change a single feature."""

from __future__ import annotations

import pytest
import torch

from napari_xt.model import XTConfig, build_model, load_model, save_model
from napari_xt.model.config import ConfigError

_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2, "model_img_size": 64}
ENCODERS = {"tiny": ("tiny", {}), "vit-s16": ("timm:vit_small_patch16_224", _VIT)}


def _model(kind: str, sub_batch: int | None = None, overlap: int = 0) -> torch.nn.Module:
    name, options = ENCODERS[kind]
    options = dict(options, **({"sub_batch": sub_batch} if sub_batch else {}))
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder=name, region_encoder_kwargs=options, region_size=256, sub_region_size=64,
                   overlap=overlap, context_encoder="none", heads={"segmentation": {"num_classes": 2}})
    return build_model(cfg, pretrained=False).eval()


@pytest.mark.parametrize("kind", sorted(ENCODERS))
@pytest.mark.parametrize("sub_batch", [1, 3, 5])
def test_sub_region_batching_gives_the_same_features(kind, sub_batch):
    """16 sub-regions per region (two regions: 32) in chunks of 1, 3 (uneven last chunk) and 5: same features."""
    whole, chunked = _model(kind), _model(kind, sub_batch)
    assert chunked.sub_batch == sub_batch and whole.sub_batch is None
    x = torch.randn(2, 3, 256, 256)
    calls: list[int] = []
    original = chunked.region_encoder.forward_backbone

    def spy(t):
        calls.append(int(t.shape[0]))
        return original(t)

    chunked.region_encoder.forward_backbone = spy  # type: ignore[method-assign]
    with torch.no_grad():
        a, b = whole.encode_regions(x), chunked.encode_regions(x)
    assert max(calls) <= sub_batch and sum(calls) == 32  # every sub-region once, never more than N per call
    assert a.grid == b.grid and torch.allclose(a.tokens, b.tokens, atol=1e-5, rtol=1e-5)
    for p, q in zip(a.maps, b.maps, strict=True):
        assert p.shape == q.shape and torch.allclose(p, q, atol=1e-5, rtol=1e-5)


def test_sub_batch_travels_in_the_checkpoint_and_is_checked(tmp_path):
    model = _model("vit-s16", sub_batch=4)
    path = save_model(model, tmp_path / "m.safetensors")
    assert load_model(path).sub_batch == 4
    with pytest.raises(ConfigError, match="sub_batch"):
        build_model(XTConfig(
            region_encoder="tiny", region_encoder_kwargs={"sub_batch": "four"}, region_size=128, sub_region_size=64,
            context_encoder="none", heads={"segmentation": {"num_classes": 2}}))


def test_cpu_inference_takes_a_pixel_budget_per_call_and_training_whole_batches(monkeypatch):
    """Without ``sub_batch``, CPU inference encodes about ``CPU_PIXELS_PER_CALL`` px per backbone call (activations
    small enough for the engine's allocator policy); training keeps whole batches (BatchNorm statistics); an explicit
    ``sub_batch`` always wins."""
    import napari_xt.model.xt as xt

    monkeypatch.setattr(xt, "CPU_PIXELS_PER_CALL", 5 * 64 * 64)  # five 64 px sub-regions per call
    x = torch.randn(2, 3, 256, 256)  # 32 sub-regions of 64 px

    def calls_of(model, train: bool) -> list[int]:
        seen: list[int] = []
        original = model.region_encoder.forward_backbone
        model.region_encoder.forward_backbone = lambda t: (seen.append(int(t.shape[0])), original(t))[1]
        model.train(train)
        with torch.no_grad():
            model.encode_regions(x)
        return seen

    assert calls_of(_model("tiny"), train=False) == [5, 5, 5, 5, 5, 5, 2]
    assert calls_of(_model("tiny"), train=True) == [32]
    assert calls_of(_model("tiny", sub_batch=3), train=False) == [3] * 10 + [2]
