"""The interactive loop in the Fine-tune tab (issue 13): paint → Train (Quick) → the new model predicts the regions in
view as the "xT preview" layer → Train again continues from that model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dockhelpers import make_dock

from napari_xt.app.finetune import capped_view
from napari_xt.model import load_model
from napari_xt.store import ResultStore
from napari_xt.synthetic import TissueSample
from napari_xt.train.loop import weights_digest
from napari_xt.widget._fields import camera
from napari_xt.widget._finetune_preview import PREVIEW_NAME, canvas_size, visible_box


def _strokes(truth: np.ndarray, rng: np.random.Generator, n: int = 60, width: int = 6) -> np.ndarray:
    """Short horizontal strokes of the true class (+ 1: 0 stays "not annotated") at random places."""
    painted = np.zeros_like(truth)
    h, w = truth.shape
    for _ in range(n):
        y, x = int(rng.integers(0, h - width)), int(rng.integers(0, w - 60))
        painted[y:y + width, x:x + 60] = truth[y:y + width, x:x + 60] + 1
    return painted


def test_train_quick_previews_the_view_then_continues_from_the_model(make_napari_viewer, qtbot, tmp_path, notes,
                                                                    monkeypatch):
    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(tmp_path / "features"))
    monkeypatch.setattr("napari_xt.app.previews.user_cache_dir", lambda: tmp_path / "cache")
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    sample = TissueSample(768, 768, seed=3)
    image = viewer.add_image(np.asarray(sample.levels[0]), rgb=True, name="slide")
    painted = _strokes(np.asarray(sample.label_levels[0]), np.random.default_rng(0))
    labels = viewer.add_labels(painted, name="strokes")
    tab = dock.finetune
    tab.image.value, tab.labels_layer.value = image, labels
    tab.mode.value = "quick"
    assert tab.budget.value == 30  # Quick: a budget for the interactive loop
    tab.epochs.value = 1
    first = tmp_path / "first.safetensors"
    tab.out.value = first
    # look at the top-left corner only: at most 300 x 300 px of the 768 x 768 image (3 x 3 regions of 256 px)
    cam = camera(viewer)
    cam.zoom = max(canvas_size(viewer)) / 300
    cam.center = (130, 130)
    y0, x0, y1, x1 = visible_box(viewer, image)
    assert y1 - y0 <= 301 and x1 - x0 <= 301 and y0 < 130 < y1
    tab.start()
    qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    assert first.is_file() and tab.last["done"].out == str(first)
    layer = next(lay for lay in viewer.layers if lay.name == PREVIEW_NAME)
    store_path = layer.metadata["napari_xt"]["preview_store"]
    assert "store" not in layer.metadata["napari_xt"]  # the Run tab must not adopt it as its results
    assert layer not in tab.labels_layer.choices  # nor is it offered as annotations
    store = ResultStore.open(store_path)
    in_view = {r * 3 + c for r in range(3) for c in range(3)
               if r * 256 < y1 and (r + 1) * 256 > max(y0, 0) and c * 256 < x1 and (c + 1) * 256 > max(x0, 0)}
    assert set(int(i) for i in store.done_ids()) == in_view and 8 not in in_view
    pred = np.asarray(store.labels[0][:])
    assert (pred[:256, :256] > 0).mean() > 0.9  # predicted (0 = not run: the class 0 is never taught)
    assert not pred[512:, 512:].any()  # out of view: not run
    data = layer.data[0] if layer.multiscale else layer.data
    assert np.array_equal(np.asarray(data[:256, :256]), pred[:256, :256])  # the layer views that store
    assert tab.marks["train"] < tab.marks["trained"] < tab.marks["preview"]
    assert tab.base.value == str(first) and dock.model.value == str(first)

    first_start = tab.last["start"]
    painted[700:720, 100:400] = np.asarray(sample.label_levels[0])[700:720, 100:400] + 1  # a correction
    labels.refresh()
    second = tmp_path / "second.safetensors"
    tab.out.value = second
    tab.start()
    qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    start = tab.last["start"]
    assert start.base == str(first)
    cfg = load_model(second).config
    assert "continued from first.safetensors" in cfg.description
    # the second run starts from the first model's weights (all of them: same encoder, context and head shapes)
    assert start.weights == weights_digest(load_model(first)) != first_start.weights
    layer2 = next(lay for lay in viewer.layers if lay.name == PREVIEW_NAME)
    assert layer2 is layer and layer.metadata["napari_xt"]["preview_store"] != store_path  # one layer, reused
    assert ResultStore.open(layer.metadata["napari_xt"]["preview_store"]).n_done > 0
    assert not Path(store_path).exists()  # the previous preview store went once the layer showed the new one
    assert not Path(store_path + ".owner").exists()  # with its owner file
    shown = Path(layer.metadata["napari_xt"]["preview_store"])
    assert shown.with_name(shown.name + ".owner").is_file()  # a later session's sweep knows whose it is


def test_stop_keeps_the_best_model_and_previews_it(make_napari_viewer, qtbot, tmp_path, notes, monkeypatch):
    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(tmp_path / "features"))
    monkeypatch.setattr("napari_xt.app.previews.user_cache_dir", lambda: tmp_path / "cache")
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    sample = TissueSample(512, 512, seed=4)
    image = viewer.add_image(np.asarray(sample.levels[0]), rgb=True, name="slide")
    labels = viewer.add_labels(_strokes(np.asarray(sample.label_levels[0]), np.random.default_rng(1)), name="s")
    tab = dock.finetune
    tab.image.value, tab.labels_layer.value = image, labels
    tab.mode.value = "quick"
    tab.budget.value = 0
    tab.epochs.value = 200  # far more than the test waits for
    out = tmp_path / "stopped.safetensors"
    tab.out.value = out
    viewer.reset_view()
    tab.start()
    # an epoch done (one window here, so no validation windows: the best is by training loss); a best model exists
    qtbot.waitUntil(lambda: bool(getattr(tab.handle.trainer, "history", None)), timeout=240_000)
    tab.stop()
    qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    done = tab.last["done"]
    assert done.stopped and done.epochs_run < 200 and done.best_epoch >= 1 and out.is_file()
    layer = next(lay for lay in viewer.layers if lay.name == PREVIEW_NAME)
    store = ResultStore.open(layer.metadata["napari_xt"]["preview_store"])
    assert store.n_done == 4  # the whole 512² image is in view: its 4 regions of 256 px
    assert not tab.stop_button.enabled and tab.train_button.enabled


def test_a_zoomed_out_view_is_capped_about_its_centre():
    view = (-1000.0, -1000.0, 9000.0, 9000.0)  # a whole 8k image and more
    box = capped_view(view, (8000, 8000), 256.0, 64)
    assert box == (4000 - 896, 4000 - 896, 4000 + 896, 4000 + 896)  # (sqrt(64) - 1) regions wide, at the centre
    assert capped_view((100.0, 100.0, 300.0, 400.0), (8000, 8000), 256.0, 64) == (100.0, 100.0, 300.0, 400.0)
    assert capped_view((-50.0, -50.0, 100.0, 100.0), (80, 80), 256.0, 64) == (0.0, 0.0, 80.0, 80.0)
