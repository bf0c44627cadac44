"""Quick training's feature cache: keyed by encoder, image and plan (any change reads a fresh folder), float16 on
disk, bounded, and a Quick run trains the heads while the encoder stays frozen."""

from __future__ import annotations

import numpy as np
import torch

from napari_xt.engine.plan import make_plan
from napari_xt.io import array_image
from napari_xt.model import XTConfig, build_model, load_model
from napari_xt.train import SegmentationLabels, Trainer, TrainingImage, TrainOptions
from napari_xt.train import cache as cache_module
from napari_xt.train.cache import FeatureCache, cache_key, encoder_checksum, prune, transform_features
from napari_xt.train.data import dihedral


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = XTConfig(region_encoder="tiny", region_size=64, sub_region_size=64, context_encoder="hyper",
                   context_encoder_kwargs={"hidden": 32}, heads={"segmentation": {"num_classes": 3}}, **kw)
    return build_model(cfg)


def _image(seed=0, size=256):
    return array_image(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_cache_key_changes_with_encoder_image_and_plan_but_not_heads():
    model, image = _model(), _image()
    plan = make_plan(image, region_size=64, context="window", window_size=2, use_mask=False)
    key = cache_key(model, image, plan)
    assert cache_key(_model(), _image(), make_plan(image, region_size=64, context="window", window_size=2,
                                                   use_mask=False)) == key  # same everything: same folder
    assert cache_key(_model(seed=1), image, plan) != key  # other encoder weights
    assert cache_key(model, _image(seed=1), plan) != key  # other image
    other_plan = make_plan(image, region_size=64, context="window", window_size=4, use_mask=False)
    assert cache_key(model, image, other_plan) != key  # other plan
    before = encoder_checksum(model)
    with torch.no_grad():
        model.heads["segmentation"].classifier.weight.add_(1.0)  # heads train over the cache: same features
    assert encoder_checksum(model) == before
    with torch.no_grad():
        next(model.region_encoder.parameters()).add_(0.01)
    assert encoder_checksum(model) != before


def test_cache_round_trips_float16_and_hits_the_second_time(tmp_path):
    model = _model()
    x = torch.randn(1, 3, 64, 64)
    calls = []

    def make():
        calls.append(1)
        with torch.no_grad():
            return model.encode_backbone(x)

    cache = FeatureCache(tmp_path, "k", budget_mb=64)
    first = cache.get(3, make)
    again = FeatureCache(tmp_path, "k", budget_mb=64).get(3, make)  # a new process would see the same folder
    assert len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(first.maps, again.maps, strict=True))
    assert first.region_size == again.region_size == (64, 64)
    exact = model.encode_regions(x)
    assert torch.allclose(model.features_from_backbone(again).tokens, exact.tokens, rtol=1e-2, atol=1e-2)
    assert next(iter((tmp_path / "k" / "r3").rglob("zarr.json")))  # on disk, zarr v3


def test_cache_folders_are_pruned_to_the_budget(tmp_path):
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "blob").write_bytes(b"x" * 1000)
    prune(tmp_path, 1500, keep="new")
    assert not (tmp_path / "old").exists() and (tmp_path / "new").exists()


def test_transformed_features_follow_the_pixels_flip_and_rotation():
    model = _model()
    x = torch.zeros(1, 3, 64, 64)
    feats = model.encode_regions(x)
    token_map = torch.arange(float(feats.grid[0] * feats.grid[1])).reshape(1, -1, 1)
    from napari_xt.model.xt import RegionFeatures

    grid = RegionFeatures(token_map, feats.grid, [token_map.reshape(1, 1, *feats.grid)], (64, 64))
    out = transform_features(grid, 1, True)
    expect = dihedral(token_map.reshape(*feats.grid).numpy(), 1, True)
    assert np.array_equal(out.maps[0][0, 0].numpy(), expect)
    assert np.array_equal(out.tokens.reshape(*out.grid).numpy(), expect)


def test_quick_training_fills_the_cache_and_keeps_the_encoder_frozen(tmp_path):
    image = _image(size=256)
    labels = np.zeros((256, 256), np.int64)
    labels[:, :128], labels[:, 128:] = 1, 2
    seg = SegmentationLabels.from_array(labels, (256, 256), ignore=0)
    opts = TrainOptions(out=str(tmp_path / "q.safetensors"), epochs=2, region_size=64, window_size=2,
                        val_fraction=0, use_mask=False, context_kwargs={"hidden": 32}, mode="quick",
                        feature_cache_dir=str(tmp_path / "cache"))
    trainer = Trainer([TrainingImage(image, segmentation=seg)], opts)
    encoder = {k: v.clone() for k, v in trainer.model.region_encoder.state_dict().items()}
    head = trainer.model.heads["segmentation"].classifier.weight.detach().clone()
    summary = trainer.fit()
    cache = trainer.features[0]
    assert cache.misses == 16 and cache.hits >= 16  # 16 regions encoded once, read back in epoch 2
    assert summary["epochs_run"] == 2
    trained = load_model(tmp_path / "q.safetensors")
    assert all(torch.equal(v, trained.region_encoder.state_dict()[k]) for k, v in encoder.items())
    assert not torch.equal(head, trained.heads["segmentation"].classifier.weight)


# -- a frozen plain ViT: the cache holds its token grids and the feature pyramid (neck) trains over them ---------------
_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2, "model_img_size": 64}


def _vit_model(seed=0, region=128, sub=64, overlap=0):
    torch.manual_seed(seed)
    cfg = XTConfig(region_encoder="timm:vit_small_patch16_224", region_encoder_kwargs=dict(_VIT), region_size=region,
                   sub_region_size=sub, overlap=overlap, context_encoder="hyper", context_encoder_kwargs={"hidden": 32},
                   heads={"segmentation": {"num_classes": 3}})
    return build_model(cfg, pretrained=False)


def test_vit_cache_holds_token_grids_and_the_neck_rebuilds_the_features(tmp_path):
    """What is cached is the ViT's stride-16 grid per sub-region (D channels, not the 4-level pyramid), and neck +
    stitching over it give the same features as encoding the region, overlapping sub-regions included."""
    model = _vit_model(region=256, sub=128, overlap=64).eval()
    x = torch.randn(1, 3, 256, 256)
    cache = FeatureCache(tmp_path, "k", budget_mb=64)
    with torch.no_grad():
        raw = cache.get(0, lambda: model.encode_backbone(x))
        assert [tuple(m.shape) for m in raw.maps] == [(9, 32, 8, 8)]  # 3 x 3 sub-regions of 128 px, stride 64
        rebuilt, exact = model.features_from_backbone(raw), model.encode_regions(x)
    assert rebuilt.grid == exact.grid and len(rebuilt.maps) == 4
    for a, b in zip(rebuilt.maps, exact.maps, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=2e-2, rtol=2e-2)  # float16 on disk


def test_cache_key_ignores_the_neck_and_names_what_is_cached(monkeypatch):
    model, image = _vit_model(), _image()
    plan = make_plan(image, region_size=128, context="window", window_size=2, use_mask=False)
    key = cache_key(model, image, plan)
    with torch.no_grad():
        next(model.region_encoder.neck.parameters()).add_(1.0)  # the pyramid trains over the cache
    assert cache_key(model, image, plan) == key
    with torch.no_grad():
        model.region_encoder.model.patch_embed.proj.weight.add_(0.01)
    assert cache_key(model, image, plan) != key
    before = encoder_checksum(model)
    monkeypatch.setattr(cache_module, "CACHE_FORMAT", "post-neck-v1")  # a folder of another format is never read
    assert encoder_checksum(model) != before


def test_quick_training_trains_a_frozen_vits_feature_pyramid(tmp_path):
    base = _vit_model()
    base.config.name = "vit-base"
    from napari_xt.model import save_model

    save_model(base, tmp_path / "base.safetensors")
    image = _image(size=256)
    labels = np.zeros((256, 256), np.int64)
    labels[:, :128], labels[:, 128:] = 1, 2
    seg = SegmentationLabels.from_array(labels, (256, 256), ignore=0)
    opts = TrainOptions(out=str(tmp_path / "q.safetensors"), base=str(tmp_path / "base.safetensors"), epochs=2,
                        region_size=128, window_size=2, val_fraction=0, use_mask=False, mode="quick",
                        feature_cache_dir=str(tmp_path / "cache"))
    trainer = Trainer([TrainingImage(image, segmentation=seg)], opts)
    backbone = {k: v.clone() for k, v in trainer.model.region_encoder.model.state_dict().items()}
    neck = {k: v.clone() for k, v in trainer.model.region_encoder.neck.state_dict().items()}
    trainer.fit()
    cache = trainer.features[0]
    assert cache.misses == 4 and cache.hits >= 4  # 4 regions of 128 px encoded once, read back in epoch 2
    trained = load_model(tmp_path / "q.safetensors")
    assert all(torch.equal(v, trained.region_encoder.model.state_dict()[k]) for k, v in backbone.items())
    changed = [k for k, v in neck.items() if not torch.equal(v, trained.region_encoder.neck.state_dict()[k])]
    assert changed and all("weight" in k or "bias" in k for k in changed)
