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
    assert tab._bases()[0][0] == "fresh tiny model"
    assert any(key == "tiny-hyper-seg" for _, key in tab._bases())
    tab.image.value = image
    tab.labels_layer.value = labels
    tab.epochs.value = 2
    out = tmp_path / "mine.safetensors"
    tab.out.value = out
    tab.start()
    assert not tab.train_button.enabled and tab.stop_button.enabled
    qtbot.waitUntil(lambda: tab.worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    assert out.is_file()
    assert tab.curve.loss, "the loss curve got points while training"
    assert "saved mine.safetensors" in tab.status.value
    assert dock.model.value == str(out) and dock.tabs.currentIndex() == 0
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
    assert tab.worker is None and any("Labels layer or a Points layer" in e for e in notes.errors())
    existing = tmp_path / "taken.safetensors"
    existing.write_bytes(b"keep")
    tab.labels_layer.value = labels
    tab.out.value = existing
    tab.start()
    assert tab.worker is None and any("exists" in e for e in notes.errors())
    assert Path(existing).read_bytes() == b"keep"
    assert tab.train_button.enabled
