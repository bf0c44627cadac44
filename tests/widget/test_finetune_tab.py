"""The Fine-tune tab: train on a painted Labels layer / a Points layer in a worker, live curve, new model selected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dockhelpers import make_dock

from napari_xt.model import load_model
from napari_xt.synthetic import TissueSample


def _tissue_layers(viewer, size=768):
    sample = TissueSample(size, size, seed=3)
    pixels = np.asarray(sample.levels[0])
    truth = np.asarray(sample.label_levels[0])
    image = viewer.add_image(pixels, rgb=True, name="slide")
    painted = np.zeros_like(truth)
    painted[100:400] = truth[100:400] + 1  # a painted band; 0 stays "not annotated"
    labels = viewer.add_labels(painted, name="my labels")
    return image, labels


def test_train_from_painted_labels_selects_the_new_model(make_napari_viewer, qtbot, tmp_path, notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    image, labels = _tissue_layers(viewer)
    tab = dock.finetune
    dock.tabs.setCurrentIndex(1)
    bases = tab._bases()
    assert bases[0] == ("fresh efficientnet-lite0 (pretrained)", "__fresh__efficientnet-lite0")
    assert ("fresh tiny model", "__fresh__tiny") in bases[:2]  # the random-init tiny one right after it
    assert any(key == "tiny-hyper-seg" for _, key in tab._bases())
    tab.image.value = image
    tab.labels_layer.value = labels
    tab.epochs.value = 2
    out = tmp_path / "mine.safetensors"
    tab.out.value = out
    tab.start()
    assert not tab.train_button.enabled and tab.stop_button.enabled
    qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    assert out.is_file()
    assert tab.curve.loss, "the loss curve got points while training"
    assert "saved mine.safetensors" in tab.status.value
    assert dock.model.value == str(out)
    assert dock.tabs.currentIndex() == 1  # the interactive loop (preview on) keeps the user in Fine-tune
    cfg = load_model(out).config
    assert cfg.heads["segmentation"]["num_classes"] == int(np.asarray(labels.data).max()) + 1
    assert tab.train_button.enabled and not tab.stop_button.enabled


def test_missing_annotations_and_existing_file_are_refused_without_a_worker(make_napari_viewer, qtbot, tmp_path,
                                                                            notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    image, labels = _tissue_layers(viewer, 256)
    tab = dock.finetune
    tab.image.value = image
    tab.labels_layer.value = None
    tab.start()
    assert tab.worker is None and any("a Shapes layer (polygons)" in e for e in notes.errors())
    existing = tmp_path / "taken.safetensors"
    existing.write_bytes(b"keep")
    tab.labels_layer.value = labels
    tab.out.value = existing
    tab.start()
    assert tab.worker is None and any("exists" in e for e in notes.errors())
    assert Path(existing).read_bytes() == b"keep"
    assert tab.train_button.enabled


def test_fresh_models_list_every_encoder_and_missing_weights_are_one_clear_error(make_napari_viewer, qtbot, tmp_path,
                                                                                 monkeypatch, notes):
    """A fresh model of a catalogue encoder loads its pretrained weights: offline with nothing cached that is a
    notification with the fix, no model file; "Random init" builds it anyway, labelled so in the checkpoint."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "NAPARI_XT_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    image, labels = _tissue_layers(viewer, 256)
    tab = dock.finetune
    fresh = {key: label for label, key in tab._bases() if key.startswith("__fresh__")}
    assert fresh["__fresh__dinov2-vits14"] == "fresh · general · dinov2-vits14  [missing]"
    assert fresh["__fresh__uni"].startswith("fresh · pathology · uni")
    tab.image.value, tab.labels_layer.value = image, labels
    tab.base.value = "__fresh__dinov2-vits14"
    tab.epochs.value, tab.preview.value = 1, False
    out = tmp_path / "vit.safetensors"
    tab.out.value = out
    tab.start()
    qtbot.waitUntil(lambda: tab.worker is None, timeout=120_000)
    errors = notes.errors()
    assert errors and "dinov2-vits14" in errors[-1] and "Traceback" not in errors[-1], errors
    assert "download" in errors[-1].lower() or "weights" in errors[-1].lower(), errors
    assert not out.exists() and tab.train_button.enabled

    asked = tab.request()
    assert asked is not None
    assert asked.options.region_encoder == "dinov2-vits14" and asked.options.pretrained is True
    tab.random_init.value = True
    random = tab.request()
    assert random is not None and random.options.pretrained is False and random.options.base is None
    tab.random_init.value = False
    tab.base.value = "__fresh__tiny"
    tiny = tab.request()
    assert tiny is not None and tiny.options.region_encoder == "tiny" and not tiny.options.pretrained  # no weights
    tab.base.value = "tiny-hyper-seg"
    saved = tab.request()
    assert saved is not None and saved.options.base == "tiny-hyper-seg" and saved.options.pretrained is False
