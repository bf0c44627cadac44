"""Catalogue facts checked against the model cards and the official loaders (issue 22): the file names torchgeo
publishes, the pretraining normalisation, the licence a repo states, the repo id the official code downloads under
(the hub cache folder is case-sensitive) and a gate that could not be confirmed."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest

from napari_xt.model.encoders.catalogue import CATALOGUE, normalisation
from napari_xt.model.weights import fix_text, resolve_weights, weight_state
from napari_xt.model.zoo import get_entry

REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_home(tmp_path, monkeypatch) -> Path:
    """An empty offline hub cache (no token, no weights folder)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "NAPARI_XT_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "hf_home"


def cache_file(home: Path, folder: str, filename: str) -> Path:
    """A file laid out as huggingface_hub stores it under ``hub/<folder>`` (its content is never read here)."""
    root = home / "hub" / folder
    (root / "snapshots" / REV).mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(REV)
    path = root / "snapshots" / REV / filename
    path.write_bytes(b"weights")
    return path


@pytest.mark.parametrize("method,digest", [("moco", "67c9032d"), ("dino", "36bcc127")])
def test_ssl4eo_s2_weights_are_torchgeos_hashed_files(hub_home, method, digest):
    name = f"ssl4eo-s2-vits16-{method}"
    hub = CATALOGUE[name].hub
    hashed = f"vit_small_patch16_224_sentinel2_all_{method}-{digest}.pth"
    assert hub is not None and hub.files == (hashed,)
    folder = f"models--torchgeo--vit_small_patch16_224_sentinel2_all_{method}"
    cache_file(hub_home, folder, f"vit_small_patch16_224_sentinel2_all_{method}.pth")  # the unhashed name: unused
    assert weight_state(hub) == "missing"
    path = cache_file(hub_home, folder, hashed)
    assert weight_state(hub) == "cached" and resolve_weights(name, hub) == path


@pytest.mark.parametrize("name", ["ssl4eo-s2-vits16-moco", "ssl4eo-s2-vits16-dino"])
def test_ssl4eo_s2_normalisation_is_divide_by_10000(name):
    entry = get_entry(name)
    assert entry.mean == (0.0,) * 13 and entry.std == (10000.0,) * 13
    assert normalisation(name, channels=13) == ((0.0,) * 13, (10000.0,) * 13)
    assert normalisation(name) is None  # never applied to an RGB image
    assert "DN / 10000" in entry.description


def test_prov_gigapath_licence_is_its_own_non_commercial_one():
    licence = get_entry("prov-gigapath").licence
    assert "Prov-GigaPath" in licence and "non-commercial" in licence and "no redistribution" in licence
    assert "Apache" not in licence


def test_uni_is_found_where_the_official_loader_downloads_it(hub_home):
    hub = CATALOGUE["uni"].hub
    assert hub is not None and hub.repo == "MahmoodLab/UNI" and get_entry("uni").weights.ref == "hf-hub:MahmoodLab/UNI"
    assert weight_state(hub) == "missing"
    # timm.create_model("hf-hub:MahmoodLab/UNI", ...) / hf_hub_download("MahmoodLab/UNI", "pytorch_model.bin")
    path = cache_file(hub_home, "models--MahmoodLab--UNI", "pytorch_model.bin")
    assert weight_state(hub) == "cached" and resolve_weights("uni", hub) == path


def test_h_optimus_gate_is_not_claimed(hub_home, monkeypatch):
    entry = get_entry("h-optimus-0")
    hub = CATALOGUE["h-optimus-0"].hub
    assert entry.gated is None and hub is not None and hub.gated is None
    assert "may be gated" in entry.description
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert weight_state(hub) == "may need a token"
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    assert weight_state(hub) == "downloadable"
    assert "if the hub asks for access" in fix_text("h-optimus-0", hub)
    assert get_entry("uni").gated is True and get_entry("dinov2-vits14").gated is False


def test_timm_lower_bound_is_the_tested_version():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    found = re.search(r'"timm>=([0-9.]+)"', text)
    assert found is not None

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v)[:3])

    assert parts("1.0.3") <= parts(found.group(1)) <= parts(version("timm"))  # Prov-GigaPath's README: >= 1.0.3
