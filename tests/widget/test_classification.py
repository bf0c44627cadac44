"""Classification heads in the dock: the window-score heat map over the image and the image's top classes."""

from __future__ import annotations

import numpy as np
import pytest
from dockhelpers import CLS_CLASSES, CLS_COLORS, configure, make_dock

from napari_xt.store import ResultStore


def _heat_at(dock, image, box) -> float:
    """The heat map's value at the centre of a level-0 box, found through napari's own world transforms."""
    layer = dock.overlays.scores.layer
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    world = centre * np.asarray(image.scale)[-2:] + np.asarray(image.translate)[-2:]
    i, j = np.round(layer.world_to_data(world)).astype(int)
    return float(layer.data[i, j])


def _edges(layer) -> np.ndarray:
    """World coordinates of a layer's outer pixel edges (napari's extent runs between pixel centres)."""
    half = np.asarray(layer.scale)[-2:] / 2
    return np.asarray(layer.extent.world)[:, -2:] + np.stack([-half, half])


def _expected(layout, stored, cls) -> dict[int, float]:
    return {w: (float(stored[w][cls]) if w in stored else np.nan) for w in layout.boxes}


def test_heat_map_and_top_classes_follow_the_windows_and_survive_resume(make_napari_viewer, qtbot, tissue_ome_tiff,
                                                                        cls_checkpoint, tmp_path, notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    [image] = viewer.open(str(tissue_ome_tiff), plugin="napari-xt")
    assert dock.add_checkpoint(cls_checkpoint)
    configure(dock, str(cls_checkpoint))  # level 1: 768 x 1024 px, 3 x 4 regions of 256 px, 2 x 2 region windows
    out = tmp_path / "cls.xt.zarr"
    dock.out.value = out
    assert not dock.score_class.native.isHidden() and not dock.top_classes.native.isHidden()
    assert dock.min_score.native.isHidden()

    windows = []
    dock.runner.window.connect(windows.append)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: len(windows) >= 1, timeout=60_000)
    dock.cancel_button.native.click()
    qtbot.waitUntil(lambda: not dock.runner.busy, timeout=60_000)

    layout = dock.runner.layout
    assert layout.class_names == CLS_CLASSES and layout.window_map.shape == (3, 4) and len(layout.boxes) == 4
    heat = dock.overlays.scores.layer
    assert heat.colormap.name == "inferno" and heat.opacity == pytest.approx(0.5)
    np.testing.assert_allclose(_edges(heat), _edges(image))  # exactly over the image
    stored = ResultStore.open(out).window_scores()
    assert {p.window_id for p in windows} == set(stored) and len(stored) < 4  # partial
    for p in windows:  # what the worker sent: a few floats and the window's box
        assert p.box == layout.boxes[p.window_id] and p.scores.shape == (4,)
        np.testing.assert_allclose(p.scores, stored[p.window_id], atol=1e-6)
    live = np.mean(np.stack(list(stored.values())), axis=0)
    top = int(np.argmax(live))
    assert dock.overlays.scores.shown_class == top  # "top class" follows the live mean
    for w, want in _expected(layout, stored, top).items():
        got = _heat_at(dock, image, layout.boxes[w])
        assert got == pytest.approx(want, abs=1e-6) if np.isfinite(want) else np.isnan(got), (w, got, want)
    text = dock.top_classes.value
    assert f"mean of {len(stored)} / 4 windows" in text
    assert text.index(CLS_CLASSES[top]) < min(text.index(n) for i, n in enumerate(CLS_CLASSES) if i != top)
    assert f"{live[top]:.3f}" in text

    # Resume in a viewer that lost the heat map: the store's window scores are painted before any new window
    viewer.layers.remove(heat)
    restored = {}

    def on_prepared(_run):
        restored.update({w: _heat_at(dock, image, dock.runner.layout.boxes[w]) for w in stored})

    dock.runner.prepared.connect(on_prepared)
    ends = []
    dock.runner.ended.connect(ends.append)
    dock.resume_button.native.click()
    qtbot.waitUntil(lambda: bool(ends), timeout=90_000)
    assert restored == pytest.approx({w: float(s[top]) for w, s in stored.items()}, abs=1e-6)
    assert ends[0].status == "complete", ends[0]

    store = ResultStore.open(out)
    final, _names = store.image_scores()
    np.testing.assert_allclose(ends[0].image_scores, final)
    top = int(np.argmax(final))
    stored = store.window_scores()
    assert len(stored) == 4 and dock.overlays.scores.shown_class == top
    for w, want in _expected(layout, stored, top).items():
        assert _heat_at(dock, image, layout.boxes[w]) == pytest.approx(want, abs=1e-6)
    text = dock.top_classes.value
    assert "image scores (store)" in text and f"{final[top]:.3f}" in text
    rgb = "#" + "".join(f"{v:02x}" for v in CLS_COLORS[top])  # the checkpoint's colour for that class
    assert rgb in text and text.index(rgb) < text.index(CLS_CLASSES[top])

    # the combo picks another class: the heat map and its contrast follow
    dock.score_class.value = 3
    values = [_heat_at(dock, image, layout.boxes[w]) for w in sorted(stored)]
    np.testing.assert_allclose(values, [stored[w][3] for w in sorted(stored)], atol=1e-6)
    lo, hi = dock.overlays.scores.layer.contrast_limits
    assert lo <= min(values) and hi >= max(values) and hi - lo <= max(values) - min(values) + 2e-3
    assert not notes.errors()
