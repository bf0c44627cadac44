"""`napari-xt train --encoder-options`: builder options reach timm, travel in the checkpoint, and `predict` rebuilds
the same encoder with no flags; large encoders are frozen by default; `--sub-batch` is kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch

from napari_xt.cli._train import parse_encoder_options
from napari_xt.model import XTConfig, build_model, load_model
from napari_xt.train import TrainOptions, model_setup
from napari_xt.train.model_setup import resolve_freeze


def test_encoder_options_parse_pairs_and_json():
    assert parse_encoder_options("drop_path_rate=0.1,blocks=[2,5,8,11],act_layer=SiLU,no_embed_class=true") == {
        "drop_path_rate": 0.1, "blocks": [2, 5, 8, 11], "act_layer": "SiLU", "no_embed_class": True}
    assert parse_encoder_options('{"drop_path_rate": 0.2, "img_size": 448}') == {"drop_path_rate": 0.2,
                                                                                 "model_img_size": 448}
    assert parse_encoder_options(None) == {} and parse_encoder_options(" ") == {}
    for bad in ("drop_path_rate", "=3", '{"a": 1'):
        with pytest.raises(ValueError, match="--encoder-options"):
            parse_encoder_options(bad)


def _scene(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (256, 256, 3), dtype=np.uint8)
    img[:, 128:] += 120
    tifffile.imwrite(tmp_path / "img.tif", img, photometric="rgb")
    labels = np.ones((256, 256), np.uint8)
    labels[:, 128:] = 2
    np.save(tmp_path / "labels.npy", labels)
    return ["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "labels.npy")]


def test_encoder_options_reach_timm_and_survive_save_and_load(tmp_path, capsys, monkeypatch):
    from napari_xt.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "vit.safetensors"
    args = [*_scene(tmp_path), "--region-encoder", "timm:vit_small_patch16_224", "--random-init",
            "--encoder-options", "depth=2,embed_dim=32,num_heads=2,drop_path_rate=0.1,img_size=64",
            "--sub-batch", "3", "--region-size", "128", "--sub-region-size", "64", "--epochs", "1",
            "--val-fraction", "0", "--no-mask", "--context-options", '{"hidden": 32}', "--out", str(out), "--json"]
    assert main(args) == 0, capsys.readouterr().err
    model = load_model(out)  # what predict does: no flags, no network
    kwargs = model.config.region_encoder_kwargs
    assert kwargs["drop_path_rate"] == 0.1 and kwargs["model_img_size"] == 64 and kwargs["sub_batch"] == 3
    vit = model.region_encoder.model
    assert len(vit.blocks) == 2 and vit.embed_dim == 32
    assert vit.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # timm's stochastic depth, last block
    assert tuple(vit.pos_embed.shape) == (1, 1 + (64 // 16) ** 2, 32)  # timm's img_size: the position table
    assert model.sub_batch == 3
    assert "random-init" in model.config.description
    with torch.no_grad():
        assert model(torch.randn(1, 3, 128, 128))["segmentation"].shape == (1, 3, 128, 128)


def test_a_bad_option_is_one_line_in_the_cli(tmp_path, capsys):
    from napari_xt.cli import main

    args = [*_scene(tmp_path), "--region-encoder", "tiny", "--encoder-options", "widths=[8,8,8,8],colour=blue",
            "--region-size", "128",
            "--epochs", "1", "--out", str(tmp_path / "x.safetensors")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "colour" in err and "\n" not in err and "Traceback" not in err


def _model_and_options(freeze=None):
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=64, sub_region_size=64, context_encoder="none",
                   heads={"segmentation": {"num_classes": 2}})
    return build_model(cfg), TrainOptions(out="x.safetensors", freeze_encoder=freeze)


def test_large_encoders_are_frozen_by_default(monkeypatch):
    model, options = _model_and_options()
    assert resolve_freeze(model, options) is None
    assert options.freeze_encoder is False  # the tiny encoder (0.1 M) trains
    monkeypatch.setattr(model_setup, "LARGE_ENCODER_PARAMS", 1000)  # now "tiny" counts as large
    model, options = _model_and_options()
    note = resolve_freeze(model, options)
    assert options.freeze_encoder is True and note is not None and "kept frozen" in note and "tiny" in note
    model, options = _model_and_options(freeze=False)  # --train-encoder
    assert resolve_freeze(model, options) is None and options.freeze_encoder is False
    model, options = _model_and_options(freeze=True)  # --freeze-encoder on a small one
    assert resolve_freeze(model, options) is None and options.freeze_encoder is True


def test_the_cli_says_when_the_default_froze_the_encoder(tmp_path, capsys, monkeypatch):
    from napari_xt.cli import main

    monkeypatch.setattr(model_setup, "LARGE_ENCODER_PARAMS", 1000)
    args = [*_scene(tmp_path), "--region-size", "128", "--epochs", "1", "--out", str(tmp_path / "x.safetensors")]
    assert main(args) == 0
    assert "kept frozen" in capsys.readouterr().err


def test_default_freeze_counts_the_backbone_not_the_pyramid():
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="timm:vit_small_patch16_224", region_encoder_kwargs={
        "depth": 1, "embed_dim": 64, "num_heads": 2, "model_img_size": 64}, region_size=64, sub_region_size=64,
        context_encoder="none", heads={"segmentation": {"num_classes": 2}})
    model = build_model(cfg)
    n = model_setup.encoder_parameters(model)
    assert n == sum(p.numel() for p in model.region_encoder.model.parameters())
    assert n < sum(p.numel() for p in model.region_encoder.parameters())  # the neck is not counted
    assert not model_setup.default_freeze(model)
    assert json.dumps(cfg.region_encoder_kwargs)  # options stay JSON-able (they travel in the checkpoint)
