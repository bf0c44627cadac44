"""Region encoders: registry, NCHW multi-scale outputs, any channel count, honest pretrained weights."""

from __future__ import annotations

import time

import pytest
import torch

import napari_xt.model  # noqa: F401  (registers everything)
from napari_xt.errors import CheckpointError, WeightsUnavailable
from napari_xt.model.encoders.base import RegionEncoder
from napari_xt.model.encoders.catalogue import TIMM_ENCODERS, create_region_encoder
from napari_xt.model.registry import list_region_encoders

BIG = sorted(TIMM_ENCODERS)


def test_registered_names():
    expected = {"tiny", *[f"swinv2_{s}" for s in ("tiny", "small", "base", "large")],
                *[f"convnext_{s}" for s in ("tiny", "small", "base")],
                *[f"hiera_{s}" for s in ("tiny", "small", "base")]}
    assert expected <= set(list_region_encoders())


@pytest.mark.parametrize("in_chans", [1, 2, 3, 5])
def test_tiny_any_channels(in_chans):
    enc = create_region_encoder("tiny", in_chans=in_chans)
    assert isinstance(enc, RegionEncoder) and enc.reductions == [4, 8, 16, 32] and enc.out_dim == enc.channels[-1]
    assert 1_000 <= sum(p.numel() for p in enc.parameters()) <= 100_000
    feats = enc(torch.randn(2, in_chans, 96, 64))
    assert [tuple(f.shape) for f in feats] == [(2, c, 96 // r, 64 // r) for c, r in zip(enc.channels, enc.reductions)]


def test_tiny_rejects_unknown_options():
    with pytest.raises(TypeError, match="unexpected"):
        create_region_encoder("tiny", depth=3)


def test_tiny_pretrained_is_an_error():
    """tiny has no pretrained weights: asking for them is an error, never a silent random init."""
    with pytest.raises(WeightsUnavailable, match="no pretrained weights"):
        create_region_encoder("tiny", pretrained=True)


def test_pretrained_offline_is_a_quick_clear_error(tmp_path, monkeypatch):
    """Nothing cached and HF_HUB_OFFLINE: a typed error naming the fix, no hang and no random init."""
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NAPARI_XT_WEIGHTS", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as err:
        create_region_encoder("convnext_tiny", in_chans=2, pretrained=True)
    assert time.perf_counter() - t0 < 10 and err.value.reason == "offline"
    assert "napari-xt download convnext_tiny" in str(err.value)


def test_hierarchical_weights_from_a_file(tmp_path):
    """A hierarchical timm backbone loads a local state dict (checked key by key first); a wrong one is reported."""
    import timm

    full = timm.create_model("test_convnext", pretrained=False, num_classes=0)
    path = tmp_path / "convnext.pth"
    torch.save(full.state_dict(), path)
    enc = create_region_encoder("timm:test_convnext", pretrained=True, weights=str(path))
    assert enc.reductions[-1] == 32 and torch.equal(enc.model.stem_0.weight, full.stem[0].weight)
    bad = {k: v for k, v in full.state_dict().items() if not k.startswith("stages.3.")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing keys: stages.3"):
        create_region_encoder("timm:test_convnext", pretrained=True, weights=str(tmp_path / "bad.pth"))


def test_bad_sub_region_size():
    with pytest.raises(ValueError, match="multiple of 32"):
        create_region_encoder("hiera_tiny", img_size=240)


@pytest.mark.slow
def test_big_backbones_at_native_size(record_property):
    """Each big backbone once, at its native input, 2 channels (the first conv adapts to any count)."""
    counts = {}
    for name in BIG:
        enc = create_region_encoder(name, in_chans=2, pretrained=False).eval()
        size = enc.native_size
        with torch.no_grad():
            feats = enc(torch.randn(1, 2, size, size))
        assert enc.reductions == [4, 8, 16, 32], name
        assert [tuple(f.shape) for f in feats] == [(1, c, size // r, size // r)
                                                   for c, r in zip(enc.channels, enc.reductions)], name
        counts[name] = sum(p.numel() for p in enc.parameters())
        if name.startswith("swinv2"):  # released xT keys: encoder.model.layers_0... -> region_encoder.model.layers_0
            assert any(k.startswith("model.layers_0.") for k in enc.state_dict()), name
        del enc
    record_property("param_counts", counts)
    print({k: f"{v / 1e6:.1f}M" for k, v in counts.items()})


@pytest.mark.slow
def test_sized_backbones_follow_sub_region_size():
    for name, size in [("hiera_tiny", 128), ("swinv2_tiny", 128)]:
        enc = create_region_encoder(name, in_chans=1, img_size=size).eval()
        with torch.no_grad():
            feats = enc(torch.randn(1, 1, size, size))
        assert feats[-1].shape == (1, enc.out_dim, size // 32, size // 32)
