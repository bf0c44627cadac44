"""Encoder specs at the edges: ``napari-xt train --region-encoder hf-hub:...`` from an offline hub cache, the trained
checkpoint predicting with no hub at all, ``--encoder-weights``/offline errors as one line, weight states listed."""

from __future__ import annotations

import json

import pytest

from napari_xt.cli import main


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from napari_xt.cli._sample import _LabelPyramid
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    root = tmp_path_factory.mktemp("slide")
    sample = TissueSample(384, 384, seed=2)
    write_ome_tiff(sample, root / "img.ome.tif")
    write_ome_tiff(_LabelPyramid(sample), root / "lbl.ome.tif")
    return root / "img.ome.tif", root / "lbl.ome.tif"


def _train(slide, out, *extra):
    img, lbl = slide
    return ["train", "--image", str(img), "--labels", str(lbl), "--ignore-label", "255", "--mpp", "1.0",
            "--epochs", "1", "--region-size", "128", "--context-options", '{"hidden": 16}', "--no-augment",
            "--out", str(out), "--json", *extra]


@pytest.mark.parametrize("kind, sub", [("vit16", "64"), ("vit14reg", "224")])
def test_train_from_hub_cache_then_predict_offline(slide, offline_hub, tmp_path, monkeypatch, capsys, kind, sub):
    offline_hub("testorg/tiny", kind, seed=1)
    out = tmp_path / "m.safetensors"
    region = "128" if sub == "64" else "224"
    args = _train(slide, out, "--region-encoder", "hf-hub:testorg/tiny", "--sub-region-size", sub)
    args[args.index("--region-size") + 1] = region
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    from napari_xt.model import read_config

    cfg = read_config(out)
    assert cfg.region_encoder == "hf-hub:testorg/tiny" and cfg.region_encoder_kwargs["arch"].startswith("vit_small")
    assert "random-init" not in cfg.description and "weights" not in cfg.region_encoder_kwargs
    # the checkpoint carries every weight: an empty cache and no network are enough to predict
    monkeypatch.setenv("HF_HOME", str(tmp_path / "nothing"))
    from napari_xt.app.driver import predict
    from napari_xt.app.request import make_request

    summary = predict(make_request(str(slide[0]), str(out), str(tmp_path / "s.zarr"), level=0, batch_size=2))
    assert summary.regions_done == summary.regions_total > 0


def test_random_init_is_labelled(slide, offline_hub, tmp_path, capsys):
    offline_hub("testorg/tiny", "vit16")
    out = tmp_path / "r.safetensors"
    assert main(_train(slide, out, "--region-encoder", "hf-hub:testorg/tiny", "--sub-region-size", "64",
                       "--random-init")) == 0
    from napari_xt.model import read_config

    assert read_config(out).description.startswith("random-init hf-hub:testorg/tiny")


def test_offline_pretrained_and_bad_weights_are_one_line_errors(slide, offline_hub, tmp_path, capsys):
    from vit_weights import tiny_vit_state, write_weights

    args = _train(slide, tmp_path / "u.safetensors", "--region-encoder", "dinov2-vits14")
    args[args.index("--region-size") + 1] = "224"
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "napari-xt download dinov2-vits14" in err and "--random-init" in err
    # a tiny ViT's weights for a ViT-S/16: reported key by key, nothing trained
    weights = write_weights(tmp_path / "w.safetensors", tiny_vit_state("vit16"))
    assert main(_train(slide, tmp_path / "w2.safetensors", "--region-encoder", "timm:vit_small_patch16_224",
                       "--sub-region-size", "64", "--encoder-weights", str(weights))) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "shape mismatches: blocks.0" in err
    assert not (tmp_path / "w2.safetensors").exists()


def test_models_lists_weight_state_and_download_offline(offline_hub, capsys):
    offline_hub("timm/vit_small_patch14_dinov2.lvd142m", "vit14reg", config=False)
    assert main(["models", "--kind", "encoder", "--json"]) == 0
    states = {e["name"]: e["weight_state"] for e in json.loads(capsys.readouterr().out)}
    assert states["dinov2-vits14"] == "cached" and states["dinov2-vitb14"] == "missing" and states["tiny"] == "none"
    assert main(["download", "uni"]) == 1
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and len(err.strip().splitlines()) == 1
