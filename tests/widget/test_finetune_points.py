"""Detection in the Fine-tune tab: a Points layer → Train (Quick, then Full) from the default fresh model (the
pretrained EfficientNet-Lite0 when its package is installed) → the preview shows the objects found in the view, at
the model's calibrated threshold, and the Run tab's Min score follows the new model's threshold."""

from __future__ import annotations

import numpy as np
from dockhelpers import make_dock

from napari_xt.app.catalog import default_fresh_encoder
from napari_xt.model import load_model
from napari_xt.widget._finetune import FRESH
from napari_xt.widget._finetune_preview import DETECTIONS_NAME


def discs(size: int = 768, n: int = 40, seed: int = 0):
    """Dark discs of 16-20 px on a pale noisy background, and their centres."""
    rng = np.random.default_rng(seed)
    img = rng.normal(210, 6, (size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    ys, xs = rng.uniform(16, size - 16, n), rng.uniform(16, size - 16, n)
    for y, x in zip(ys, xs, strict=True):
        img[(yy - y) ** 2 + (xx - x) ** 2 < rng.uniform(64, 100)] = (70, 45, 120)
    return np.clip(img, 0, 255).astype(np.uint8), np.stack([ys, xs], 1)


def test_points_train_quick_then_full_and_the_preview_shows_detections(make_napari_viewer, qtbot, tmp_path, notes,
                                                                       monkeypatch):
    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(tmp_path / "features"))
    monkeypatch.setattr("napari_xt.app.previews.user_cache_dir", lambda: tmp_path / "cache")
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    pixels, centres = discs()
    image = viewer.add_image(pixels, rgb=True, name="orthophoto")
    points = viewer.add_points(centres, size=18, name="trees")
    tab = dock.finetune
    assert tab.base.value == FRESH + default_fresh_encoder()  # the default fresh model: pretrained when installed
    tab.image.value, tab.points.value = image, points
    for mode, epochs in (("quick", 3), ("full", 1)):
        tab.mode.value = mode
        tab.epochs.value = epochs
        out = tmp_path / f"{mode}.safetensors"
        tab.out.value = out
        tab.start()
        qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None, timeout=300_000)
        assert not notes.errors(), notes.errors()
        assert out.is_file()
        threshold = load_model(out).config.score_threshold
        assert threshold is not None and 0.0 <= threshold <= 1.0
        assert dock.model.value == str(out)
        assert dock.min_score.value == threshold  # the Run tab follows the model's calibrated threshold
        layer = next(lay for lay in viewer.layers if lay.name == DETECTIONS_NAME)
        assert len(layer.data) > 0, f"{mode}: the preview shows no detection"
        # what it shows lies on the image, where the discs are (every detection within 24 px of a disc's centre
        # would be too strong a claim for one epoch; most of them is not)
        found = np.asarray(layer.data)
        near = np.min(np.linalg.norm(found[:, None] - centres[None], axis=-1), axis=1) < 24
        assert near.mean() >= 0.5, (mode, near.mean(), len(found))
    assert tab.base.value == str(tmp_path / "full.safetensors") or tab.base.value.endswith("full.safetensors")
