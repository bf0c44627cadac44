"""Quick training in the Fine-tune tab: frozen encoder over the on-disk feature cache, per-class metrics in the
status line, the new model selected in the Run tab."""

from __future__ import annotations

import numpy as np
from dockhelpers import make_dock

from napari_xt.model import load_model
from napari_xt.synthetic import TissueSample


def test_quick_training_fills_the_feature_cache_and_selects_the_model(make_napari_viewer, qtbot, tmp_path, notes,
                                                                      monkeypatch):
    cache = tmp_path / "features"
    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(cache))
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    sample = TissueSample(512, 512, seed=3)
    image = viewer.add_image(np.asarray(sample.levels[0]), rgb=True, name="slide")
    truth = np.asarray(sample.label_levels[0])
    painted = np.zeros_like(truth)
    painted[50:300] = truth[50:300] + 1
    labels = viewer.add_labels(painted, name="strokes")
    tab = dock.finetune
    tab.image.value, tab.labels_layer.value = image, labels
    tab.mode.value = "quick"
    tab.epochs.value = 2
    out = tmp_path / "quick.safetensors"
    tab.out.value = out
    tab.start()
    qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    assert out.is_file() and "saved quick.safetensors" in tab.status.value
    folders = [p for p in cache.iterdir() if p.is_dir()]
    assert len(folders) == 1 and any(folders[0].glob("r*/zarr.json"))  # features of the regions, on disk
    assert dock.model.value == str(out)
    assert tab.base.value == str(out)  # the next Train continues from this model
    assert str(tab.out.value) != str(out)  # ... into a new file
    assert load_model(out).config.heads["segmentation"]["num_classes"] == int(painted.max()) + 1
