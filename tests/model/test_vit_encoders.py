"""Plain ViTs as region encoders: pyramid strides and shapes, prefix tokens, patch/sub-region checks, honest weights."""

from __future__ import annotations

import pytest
import torch
from vit_weights import TINY_VITS, tiny_vit_state, write_weights

from napari_xt.errors import CheckpointError, WeightsUnavailable
from napari_xt.model import XTConfig, build_model, create_region_encoder, load_model, save_model
from napari_xt.model.config import ConfigError
from napari_xt.model.encoders.catalogue import CATALOGUE
from napari_xt.model.encoders.vit_neck import ViTRegionEncoder
from napari_xt.model.zoo import get_entry


def _spec(kind: str) -> tuple[str, dict]:
    """``timm:`` spec + options of a tiny ViT (``model_img_size``: its position table; ``img_size`` would be the
    sub-region size, which is validated)."""
    arch, args = TINY_VITS[kind]
    return f"timm:{arch}", {k: v for k, v in args.items() if k != "img_size"} | {"model_img_size": args["img_size"]}


@pytest.mark.parametrize("kind, size, prefix", [("vit16", 64, 1), ("vit14reg", 224, 5), ("vit8", 64, 1)])
def test_pyramid_strides_and_shapes(kind, size, prefix):
    """Every patch size yields stride 4/8/16/32 maps of the sub-region, class + register tokens dropped."""
    spec, args = _spec(kind)
    enc = create_region_encoder(spec, in_chans=3, **args).eval()
    assert isinstance(enc, ViTRegionEncoder) and enc.num_prefix_tokens == prefix
    assert enc.reductions == [4, 8, 16, 32]
    with torch.no_grad():
        feats = enc(torch.randn(2, 3, size, size))
    assert [tuple(f.shape) for f in feats] == [(2, c, size // r, size // r)
                                               for c, r in zip(enc.channels, enc.reductions, strict=True)]
    assert enc.out_dim == 32


def test_prefix_tokens_do_not_leak_into_the_grid():
    """A patch token's feature depends on the image; were a register token left in, the grid would be shifted: the
    top-left map cell must follow a change of the top-left patch only."""
    spec, args = _spec("vit14reg")
    enc = create_region_encoder(spec, **args).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        grid = enc.model.forward_intermediates(x, indices=1, intermediates_only=True)[0]
    assert grid.shape[-2:] == (16, 16)  # 224 / 14 patch tokens per side, 5 prefix tokens gone


def test_two_channel_input_and_config_travel():
    spec, args = _spec("vit16")
    cfg = XTConfig(region_encoder=spec, region_encoder_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2},
                   region_size=128, sub_region_size=64, in_chans=2, context_encoder="none",
                   heads={"segmentation": {"num_classes": 2}})
    model = build_model(cfg, pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, 128, 128))
    assert out["segmentation"].shape == (1, 2, 128, 128)
    assert model.region_encoder.model.patch_embed.proj.weight.shape[1] == 2


def test_sub_region_size_checked_against_patch():
    with pytest.raises(ConfigError, match="patch-14 ViT needs a multiple of 224"):
        create_region_encoder("dinov2-vits14", img_size=256)
    spec, args = _spec("vit16")
    with pytest.raises(ConfigError, match="multiple of 32"):
        create_region_encoder(spec, img_size=80, **args)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_local_weights_file_loads_exactly(tmp_path, suffix):
    spec, args = _spec("vit16")
    state = tiny_vit_state("vit16", seed=3)
    path = write_weights(tmp_path / f"w{suffix}", state)
    enc = create_region_encoder(spec, pretrained=True, weights=str(path), **args)
    own = enc.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())


def test_weights_adapt_to_two_channels(tmp_path):
    spec, args = _spec("vit16")
    path = write_weights(tmp_path / "w.safetensors", tiny_vit_state("vit16"))
    enc = create_region_encoder(spec, in_chans=2, pretrained=True, weights=str(path), **args)
    assert enc.model.patch_embed.proj.weight.shape[1] == 2


def test_mismatched_weights_reported_key_by_key(tmp_path):
    spec, args = _spec("vit16")
    state = tiny_vit_state("vit16")
    state.pop("blocks.1.mlp.fc2.bias")
    state["blocks.0.attn.qkv.weight"] = torch.zeros(7, 32)
    state["decoder.extra"] = torch.zeros(1)
    path = write_weights(tmp_path / "bad.safetensors", state)
    enc = create_region_encoder(spec, **args)
    before = {k: v.clone() for k, v in enc.model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        create_region_encoder(spec, pretrained=True, weights=str(path), **args)
    text = str(err.value)
    assert "missing keys: blocks.1.mlp.fc2.bias" in text and "unexpected keys: decoder.extra" in text
    assert "blocks.0.attn.qkv.weight (7, 32) vs model (96, 32)" in text
    assert set(before) == set(enc.model.state_dict())  # nothing half-loaded anywhere


def test_fake_hub_cache_resolves_offline_and_checkpoint_needs_no_hub(offline_hub, tmp_path, monkeypatch):
    """``hf-hub:`` spec: architecture from the cached config.json, weights from the cached file, HF_HUB_OFFLINE=1.
    The saved model pins the architecture, so it reloads with an empty cache."""
    weights = offline_hub("testorg/tiny-vit16", "vit16", seed=5)
    cfg = XTConfig(region_encoder="hf-hub:testorg/tiny-vit16", region_size=128, sub_region_size=64,
                   context_encoder="none", heads={"segmentation": {"num_classes": 2}})
    from safetensors.torch import load_file

    from napari_xt.model.encoders.catalogue import pin_options

    cfg = cfg.replace(region_encoder_kwargs=pin_options(cfg.region_encoder))
    model = build_model(cfg, pretrained=True)
    ref = load_file(str(weights))
    own = model.region_encoder.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in ref.items())
    path = save_model(model, tmp_path / "m.safetensors")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    again = load_model(path)
    assert torch.equal(again.region_encoder.model.pos_embed, model.region_encoder.model.pos_embed)


def test_pretrained_with_nothing_cached_offline_is_an_error(offline_hub):
    with pytest.raises(WeightsUnavailable) as err:
        create_region_encoder("uni", img_size=224, pretrained=True)
    assert err.value.encoder == "uni" and err.value.reason == "offline"
    assert "napari-xt download uni" in str(err.value) and "HF_TOKEN" in str(err.value)
    with pytest.raises(WeightsUnavailable, match="no pretrained weights"):
        create_region_encoder("tiny", pretrained=True)


def test_weights_folder_matched_by_name(offline_hub, tmp_path, monkeypatch):
    """A hand-downloaded file named after the catalogue entry is found (NAPARI_XT_WEIGHTS), then key-checked."""
    folder = tmp_path / "weights"
    write_weights(folder / "lunit-vits8.safetensors", tiny_vit_state("vit8"))
    monkeypatch.setenv("NAPARI_XT_WEIGHTS", str(folder))
    from napari_xt.model.weights import weight_state

    hub = CATALOGUE["lunit-vits8"].hub
    assert weight_state(hub) == "folder"
    with pytest.raises(CheckpointError, match="shape mismatches"):  # a tiny ViT is not a ViT-S/8: reported, not used
        create_region_encoder("lunit-vits8", img_size=224, pretrained=True)


def test_catalogue_entries_are_complete():
    for name in ("uni", "uni2-h", "virchow2", "h-optimus-0", "prov-gigapath", "lunit-vits8", "dinov2-vits14",
                 "dinov2-vitb14", "dinov2-vitl14", "ssl4eo-s2-vits16-moco"):
        entry = get_entry(name)
        assert entry.kind == "encoder" and entry.licence and entry.patch_size in (8, 14, 16), name
        assert entry.native_size and entry.config["call"].startswith("timm.create_model("), name
    assert get_entry("uni2-h").registers == 8 and get_entry("virchow2").registers == 4
    assert get_entry("h-optimus-0").mean == (0.707223, 0.578729, 0.703617)
    assert get_entry("uni").gated and not get_entry("dinov2-vits14").gated
