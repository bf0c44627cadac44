"""The model zoo: one registry of named demo models, presets and region encoders behind ``load_model`` and the dock."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import napari_xt.model as model_pkg
from napari_xt.app import catalog
from napari_xt.errors import CheckpointError, EncoderIsNotAModel, UnknownModel, XTError
from napari_xt.model import list_context_encoders, list_region_encoders, load_model, save_model
from napari_xt.model.checkpoint import DEMO_MODELS, PRESETS, demo_model_path, list_demo_models
from napari_xt.model.encoders.catalogue import CATALOGUE, TIMM_ENCODERS
from napari_xt.model.zoo import (
    KINDS,
    WeightSource,
    ZooEntry,
    get_entry,
    known_names,
    list_entries,
    register_entry,
    register_imported,
    unregister_entry,
)


def names(kind=None) -> list[str]:
    return [e.name for e in list_entries(kind)]


# -- what the zoo holds ---------------------------------------------------------------------------------------------
def test_entries_listed_by_kind():
    assert [e.kind for e in list_entries()] == sorted((e.kind for e in list_entries()), key=KINDS.index)
    assert names("demo") == ["demo-tissue", "demo-sar"]
    assert {"tiny-hyper-seg", "tiny-hyper-det", "tiny-hyper-cls", "tiny-none-seg", "tiny-xl-seg",
            "swinv2_tiny-hyper-seg"} <= set(names("preset"))
    assert set(names("encoder")) == {"tiny", *TIMM_ENCODERS, *CATALOGUE}
    assert set(list_region_encoders()) <= set(names("encoder"))  # every built-in builder has a zoo entry
    assert names("imported") == []  # no released checkpoint is named by default (see model/zoo.py)
    with pytest.raises(ValueError, match="kind must be one of"):
        list_entries("model")  # type: ignore[arg-type]


def test_entries_carry_weights_licence_and_description():
    for entry in list_entries():
        assert entry.description and entry.group, entry.name
        json.dumps(entry.to_dict())  # JSON-ready for `napari-xt models --json`
        assert not entry.gated or (entry.kind == "encoder" and entry.weights.kind == "hub"), entry.name
    demo = get_entry("demo-tissue")
    assert demo.weights == WeightSource("shipped", "demo_tissue.safetensors") and demo.available
    assert demo.licence and demo.xt_config().class_names["segmentation"][-1] == "gland"
    assert get_entry("demo-sar").xt_config().in_chans == 2
    preset = get_entry("tiny-hyper-seg")
    assert preset.weights.kind == "random" and preset.licence == "" and preset.xt_config().name == "tiny-hyper-seg"
    swin = get_entry("swinv2_tiny")
    assert swin.kind == "encoder" and swin.weights == WeightSource("timm", "swinv2_tiny_window16_256")
    assert swin.licence == "MIT" and swin.native_size == 256 and swin.config["builder"] == "timm"
    assert get_entry("hiera_tiny").licence == "CC-BY-NC-4.0"
    assert get_entry("tiny").weights.kind == "random"
    with pytest.raises(ValueError, match="carries no model config"):
        swin.xt_config()


def test_old_tables_are_views_of_the_zoo():
    assert list(PRESETS) == names("preset") and list(DEMO_MODELS) == names("demo")
    assert PRESETS["tiny-hyper-seg"] == dict(get_entry("tiny-hyper-seg").config)
    PRESETS["tiny-hyper-seg"]["region_size"] = 1  # a copy: the zoo is not changed through the view
    assert get_entry("tiny-hyper-seg").config["region_size"] == 256
    assert DEMO_MODELS["demo-sar"] == "demo_sar.safetensors"
    assert list_demo_models() == ["demo-tissue", "demo-sar"]
    assert demo_model_path("demo-tissue") == get_entry("demo-tissue").weights.path()
    assert demo_model_path("tiny-hyper-seg") is None and "tiny" not in PRESETS


def test_all_context_encoders_import_plainly():
    assert {"none", "hyper", "transformer_xl", "mamba", "mamba_bidirectional", "longformer"} <= set(
        list_context_encoders())
    assert not hasattr(model_pkg, "UNAVAILABLE_CONTEXT_MODULES")


def test_checkpoint_and_importer_import_each_other_plainly():
    """No import hidden behind importlib: the importer reads the file format module, not the load_model front door."""
    here = Path(model_pkg.__file__).parent
    for name in ("checkpoint.py", "xt_import.py"):
        assert "importlib" not in (here / name).read_text()
    tree = ast.parse((here / "xt_import.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "checkpoint" not in imported and "_format" in imported


# -- names that are not models ---------------------------------------------------------------------------------------
def test_unknown_name_lists_demo_models_presets_and_encoders():
    with pytest.raises(UnknownModel) as err:
        load_model("no-such-model")
    assert type(err.value) is UnknownModel and isinstance(err.value, XTError | ValueError)
    msg = str(err.value)
    for name in ("demo-tissue", "demo-sar", "tiny-hyper-seg", "swinv2_tiny-hyper-seg", "swinv2_tiny"):
        assert name in msg
    assert err.value.name == "no-such-model" and err.value.known == known_names()
    assert err.value.known["demo"] == ["demo-tissue", "demo-sar"]
    with pytest.raises(UnknownModel, match="demo-sar"):
        get_entry("no-such-model")


@pytest.mark.parametrize("name", ["tiny", "swinv2_tiny", "hiera_base", "timm:resnet18", "hf-hub:org/repo"])
def test_encoder_name_is_refused_with_the_train_hint(name):
    with pytest.raises(EncoderIsNotAModel) as err:
        load_model(name)
    assert f"napari-xt train --region-encoder {name}" in str(err.value)
    assert isinstance(err.value, UnknownModel) and "demo-tissue" in err.value.known["demo"]
    with pytest.raises(EncoderIsNotAModel):
        catalog.describe(name)


# -- loading through the zoo -----------------------------------------------------------------------------------------
def test_demo_model_loads_its_shipped_file():
    entry = get_entry("demo-tissue")
    from_zoo = load_model("demo-tissue")
    from_file = load_model(entry.weights.path())
    assert not from_zoo.training and from_zoo.config == entry.xt_config() == from_file.config
    for (k, a), (_, b) in zip(from_zoo.state_dict().items(), from_file.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_preset_builds_random_weights():
    model = load_model("tiny-hyper-det")
    assert model.config == get_entry("tiny-hyper-det").xt_config() and not model.training
    assert list(model.config.heads) == ["detection"]


def test_file_paths_still_load(tmp_path, monkeypatch):
    model = load_model("tiny-none-seg")
    path = save_model(model, tmp_path / "mine.safetensors")
    for key in (path, str(path)):
        assert load_model(key).config == model.config
    # A bare file name with no suffix, not a zoo name, in the working folder: a file.
    (tmp_path / "bare").write_bytes(path.read_bytes())
    monkeypatch.chdir(tmp_path)
    assert load_model("bare").config == model.config
    # A file named like a zoo entry does not shadow it; a Path always means the file.
    (tmp_path / "tiny-hyper-seg").write_bytes(path.read_bytes())
    assert load_model("tiny-hyper-seg").config.name == "tiny-hyper-seg"
    assert load_model(Path("tiny-hyper-seg")).config == model.config
    with pytest.raises(CheckpointError, match="no such file"):
        load_model("models/missing")
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(Path("missing"))


# -- registering -----------------------------------------------------------------------------------------------------
def test_register_entry_checks_its_input():
    ok = dict(description="d", config={}, weights=WeightSource("random"))
    with pytest.raises(ValueError, match="letters, digits"):
        register_entry(ZooEntry(name="a/b", kind="encoder", **ok))
    with pytest.raises(ValueError, match="not ending like a file"):
        register_entry(ZooEntry(name="model.ckpt", kind="encoder", **ok))
    with pytest.raises(ValueError, match="kind must be one of"):
        register_entry(ZooEntry(name="x", kind="model", **ok))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights come from shipped"):
        register_entry(ZooEntry(name="x", kind="demo", **ok))
    with pytest.raises(ValueError, match="unknown XTConfig key"):
        register_entry(ZooEntry(name="x", kind="preset", description="d", config={"regoin_size": 1},
                                weights=WeightSource("random")))
    with pytest.raises(ValueError, match="already registered"):
        register_entry(ZooEntry(name="tiny-hyper-seg", kind="encoder", **ok))
    register_entry(get_entry("tiny-hyper-seg"))  # the same entry again is a no-op
    assert "x" not in known_names()["encoder"]


def test_imported_entry_loads_its_file(tmp_path):
    model = load_model("tiny-hyper-cls")
    path = save_model(model, tmp_path / "released-like.safetensors")
    entry = register_imported("my-xt", path, licence="CC-BY-4.0")
    try:
        assert entry.kind == "imported" and entry.weights == WeightSource("file", str(path.resolve()))
        assert names("imported") == ["my-xt"] and "my-xt" in catalog.list_presets()
        assert load_model("my-xt").config == model.config
        info = catalog.describe("my-xt")
        assert info.source == "imported" and info.licence == "CC-BY-4.0" and not info.random_init
        path.unlink()
        assert "my-xt" not in catalog.list_presets()  # listed only while its file exists
        with pytest.raises(CheckpointError, match="weights file .* is missing"):
            load_model("my-xt")
    finally:
        unregister_entry("my-xt")


def test_missing_demo_file_is_reported_not_listed():
    register_entry(ZooEntry(name="demo-gone", kind="demo", description="d", config={},
                            weights=WeightSource("shipped", "no_such_demo.safetensors")))
    try:
        assert not get_entry("demo-gone").available
        assert "demo-gone" not in list_demo_models() and demo_model_path("demo-gone") is None
        assert "demo-gone" not in catalog.list_presets()
        with pytest.raises(CheckpointError, match="make_demo_models.sh"):
            load_model("demo-gone")
    finally:
        unregister_entry("demo-gone")


# -- the dock's catalogue reads the zoo ------------------------------------------------------------------------------
def test_catalog_reads_the_zoo():
    assert catalog.list_presets() == names("demo") + names("preset")
    assert catalog.list_region_encoders() == sorted(names("encoder"))
    demo = catalog.describe("demo-sar")
    assert demo.source == "demo" and demo.in_chans == 2 and demo.licence == "BSD-3-Clause"
    assert "shipped file" in demo.weights and "DEMO" in demo.label
    preset = catalog.describe("tiny-hyper-cls")
    assert preset.random_init and preset.tasks == ["classification"] and preset.description
    with pytest.raises(UnknownModel, match="demo-tissue"):
        catalog.describe("no-such-model")
