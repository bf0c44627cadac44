"""The Sentinel-1 catalogue entry (SSL4EO-S12 ResNet-50, VV/VH): a 2-channel stem loaded as it is, adapted for other
channel counts, every key checked; resolved offline from a hub cache laid out as huggingface_hub stores it."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from napari_xt.errors import CheckpointError, WeightsUnavailable
from napari_xt.model import XTConfig, build_model, create_region_encoder
from napari_xt.model.encoders.catalogue import CATALOGUE
from napari_xt.model.zoo import get_entry

NAME = "ssl4eo-s1-rn50-moco"
REPO = "torchgeo/resnet50_sentinel1_all_moco"
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def s1_state() -> dict[str, torch.Tensor]:
    """A random 2-channel timm ResNet-50 state dict without classifier (what torchgeo's loader expects of the file)."""
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=0, in_chans=2)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def s1_hub(tmp_path_factory, s1_state) -> Path:
    """HF_HOME whose hub cache holds the entry's file under its torchgeo name."""
    home = tmp_path_factory.mktemp("hf_home")
    root = home / "hub" / f"models--{REPO.replace('/', '--')}"
    (root / "snapshots" / REV).mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(REV)
    torch.save(s1_state, root / "snapshots" / REV / CATALOGUE[NAME].hub.files[0])
    return home


@pytest.fixture
def offline(s1_hub, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HOME", str(s1_hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "NAPARI_XT_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    return s1_hub


def test_the_entry_is_in_the_catalogue_with_its_facts():
    entry = get_entry(NAME)
    assert entry.group == "remote sensing" and entry.licence == "CC-BY-4.0" and not entry.gated
    assert entry.mean == (-12.59, -20.26) and entry.std == (5.26, 5.91)
    assert entry.weights.ref == f"hf-hub:{REPO}" and "resnet50" in entry.config["call"]


def test_two_channel_weights_load_unchanged_from_the_hub_cache(offline, s1_state):
    enc = create_region_encoder(NAME, in_chans=2, pretrained=True, img_size=256).eval()
    assert enc.reductions == [4, 8, 16, 32] and enc.channels == [256, 512, 1024, 2048]
    state = enc.model.state_dict()
    assert torch.equal(state["conv1.weight"], s1_state["conv1.weight"])  # VV/VH stem as trained, not adapted
    assert torch.equal(state["layer4.2.conv3.weight"], s1_state["layer4.2.conv3.weight"])
    cfg = XTConfig(region_encoder=NAME, region_size=256, sub_region_size=256, in_chans=2, context_encoder="none",
                   heads={"segmentation": {"num_classes": 2}})
    with torch.no_grad():
        out = build_model(cfg, pretrained=True)(torch.randn(1, 2, 256, 256))
    assert out["segmentation"].shape == (1, 2, 256, 256)


def test_other_channel_counts_adapt_the_stem(offline, s1_state):
    one = create_region_encoder(NAME, in_chans=1, pretrained=True)
    assert torch.allclose(one.model.state_dict()["conv1.weight"], s1_state["conv1.weight"].sum(1, keepdim=True))
    three = create_region_encoder(NAME, in_chans=3, pretrained=True)
    assert three.model.state_dict()["conv1.weight"].shape[1] == 3


def test_a_mismatched_file_is_reported_key_by_key(tmp_path, s1_state):
    bad = dict(s1_state)
    bad.pop("layer1.0.conv1.weight")
    bad["layer2.0.bn1.weight"] = torch.ones(7)
    path = tmp_path / "s1.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as err:
        create_region_encoder(NAME, in_chans=2, pretrained=True, weights=str(path))
    assert "layer1.0.conv1.weight" in str(err.value) and "layer2.0.bn1.weight" in str(err.value)


def test_nothing_cached_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("NAPARI_XT_WEIGHTS", raising=False)
    with pytest.raises(WeightsUnavailable, match=f"napari-xt download {NAME}"):
        create_region_encoder(NAME, in_chans=2, pretrained=True)
