"""Config JSON round trip, safetensors checkpoints (identical outputs after save/load), and readable errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import napari_xt.model  # noqa: F401
from napari_xt.errors import EncoderIsNotAModel, UnknownModel
from napari_xt.model import (
    PRESETS,
    CheckpointError,
    ConfigError,
    XTConfig,
    build_model,
    list_context_encoders,
    load_model,
    read_config,
    save_model,
)

HEADS = {"segmentation": {"num_classes": 3}, "detection": {"num_classes": 1}, "classification": {"num_classes": 2}}


def small_config(**kw):
    base = dict(region_encoder="tiny", region_size=128, sub_region_size=64, context_encoder="none", heads=HEADS,
                class_names={"segmentation": ["bg", "a", "b"]}, class_colors={"segmentation": [[0, 0, 0],
                [255, 0, 0], [0, 255, 0]]}, pixel_size=0.5, name="t", description="test model")
    return XTConfig(**{**base, **kw})


# -- config ---------------------------------------------------------------------------------------------------------
def test_config_json_round_trip():
    cfg = small_config(in_chans=2)
    assert cfg.mean == [0.5, 0.5]
    again = XTConfig.from_json(cfg.to_json())
    assert again == cfg and again.to_dict() == json.loads(json.dumps(cfg.to_dict()))
    assert XTConfig().mean == [0.485, 0.456, 0.406]


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown XTConfig key.*'regoin_size'"):
        XTConfig.from_dict({"regoin_size": 512})
    with pytest.raises(ConfigError, match="pad_mode"):
        XTConfig(pad_mode="wrap")
    with pytest.raises(ConfigError, match="mean/std"):
        XTConfig(in_chans=2, mean=[0.1, 0.2, 0.3])
    with pytest.raises(ConfigError, match="class_names"):
        small_config(class_names={"segmentation": ["only one"]})
    with pytest.raises(ConfigError, match="overlap"):
        XTConfig(sub_region_size=64, overlap=64)
    with pytest.raises(ConfigError, match="valid JSON"):
        XTConfig.from_json("{nope")


# -- checkpoints ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("context", list_context_encoders())
def test_round_trip_identical_outputs(tmp_path, context):
    torch.manual_seed(0)
    model = build_model(small_config(context_encoder=context), pretrained=False).eval()
    for p in model.parameters():  # make sure nothing is still at a default init the rebuild would reproduce
        p.data.add_(0.01 * torch.randn_like(p))
    path = save_model(model, tmp_path / "m")
    assert path.name == "m.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format_version"] == "1" and json.loads(meta["napari_xt_config"])["context_encoder"] == context
    loaded = load_model(path)
    assert not loaded.training and loaded.config == model.config
    x = torch.randn(1, 3, 150, 217)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    torch.testing.assert_close(a["segmentation"], b["segmentation"], rtol=0, atol=0)
    torch.testing.assert_close(a["classification"], b["classification"], rtol=0, atol=0)
    torch.testing.assert_close(a["detection"]["heatmap"], b["detection"]["heatmap"], rtol=0, atol=0)
    assert read_config(path) == model.config


def test_mismatched_keys_are_named(tmp_path):
    model = build_model(small_config(), pretrained=False)
    path = save_model(model, tmp_path / "m.safetensors")
    state = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    missing = "heads.classification.fc.bias"
    shaped = "heads.classification.fc.weight"
    state.pop(missing)
    state["heads.extra.weight"] = torch.zeros(3)
    state[shaped] = torch.zeros(5, 5)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad), metadata=meta)
    with pytest.raises(CheckpointError) as err:
        load_model(bad)
    msg = str(err.value)
    assert missing in msg and "heads.extra.weight" in msg and shaped in msg and "(5, 5)" in msg


def test_not_a_napari_xt_file(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match="not a napari-xt checkpoint"):
        load_model(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(junk)
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / "missing.safetensors")


def test_wrong_format_version(tmp_path):
    model = build_model(small_config(), pretrained=False)
    path = save_model(model, tmp_path / "m.safetensors")
    state = load_file(str(path))
    save_file(state, str(path), metadata={"napari_xt_config": model.config.to_json(), "format_version": "99"})
    with pytest.raises(CheckpointError, match="format '99'"):
        load_model(path)


def test_presets_and_names():
    for name, preset in PRESETS.items():
        if preset["region_encoder"] == "tiny" and preset["context_encoder"] in list_context_encoders():
            model = load_model(name)
            assert model.config.name == name and not model.training
    # A bare encoder name is not a model any more (it used to become a random 2-class model): see test_zoo.py.
    with pytest.raises(EncoderIsNotAModel, match="napari-xt train --region-encoder tiny"):
        load_model("tiny")
    with pytest.raises(UnknownModel, match="tiny-hyper-seg"):
        load_model("no-such-model")


def test_released_checkpoint_goes_to_the_importer(tmp_path):
    path = tmp_path / "x.ckpt"
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(path)
    path.write_bytes(b"\0")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_model(path)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_model(str(path))
