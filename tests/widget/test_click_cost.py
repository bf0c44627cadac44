"""What the click on Run costs the main thread (issue 25): the first Labels layer of a process used to build vispy's
dash-pattern table there (100-140 ms); the dock's catalogue worker now builds it before any Run."""

from __future__ import annotations

import threading

import numpy as np
from dockhelpers import make_dock
from vispy.visuals.line import dash_atlas


def test_vispy_dash_patterns_are_built_by_the_catalogue_worker_not_at_the_first_layer(make_napari_viewer, qtbot,
                                                                                       monkeypatch):
    cached = dash_atlas._make_pattern  # vispy's lru_cache
    cached.cache_clear()  # as in a fresh process (earlier tests made line visuals)
    built_in: list[threading.Thread] = []

    def recording(*args):
        before = cached.cache_info().misses
        try:
            return cached(*args)
        finally:
            if cached.cache_info().misses > before:
                built_in.append(threading.current_thread())

    monkeypatch.setattr(dash_atlas, "_make_pattern", recording)
    viewer, _dock = make_dock(make_napari_viewer, qtbot)
    assert len(built_in) >= 13 and threading.main_thread() not in built_in  # every pattern, in the worker
    built_in.clear()
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="like the run's layer")  # what Run's click does
    assert built_in == []  # its polygon overlay's line visual found every pattern built


def _turns(qtbot, ms: int = 400) -> None:
    qtbot.wait(ms)  # event-loop turns: the staged steps run on timers


def test_the_run_layer_goes_in_over_several_turns_and_ends_whole_and_not_active(make_napari_viewer, qtbot):
    """The click only makes the layer model; the insertion and each slow overlay come on later turns, the image
    stays the active layer, and the finished layer has every overlay napari's Labels key bindings use."""
    from napari.layers.labels._labels_key_bindings import reset_polygon

    from napari_xt.widget._overlays import Overlays
    from napari_xt.widget._staged_layer import DEFERRED_OVERLAYS

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((64, 64), np.uint8))
    overlays = Overlays(viewer)
    info = type("Info", (), {"tasks": ("segmentation",), "class_names": ["bg", "tumour"], "class_colors": []})()
    overlays.reserve("/tmp/a.xt.zarr", image, info)
    layer = overlays.labels
    assert layer not in viewer.layers  # nothing inserted inside the click
    assert not set(DEFERRED_OVERLAYS) & set(layer._overlays)
    qtbot.waitUntil(lambda: layer in viewer.layers, timeout=2000)
    qtbot.waitUntil(lambda: set(DEFERRED_OVERLAYS) <= set(layer._overlays), timeout=2000)
    assert viewer.layers.selection.active is image
    viewer.layers.selection.active = layer
    reset_polygon(layer)  # Escape on the result layer: needs its polygon and brush overlays back


def test_a_run_that_never_starts_leaves_no_layer_whether_or_not_it_was_inserted(make_napari_viewer, qtbot):
    from napari_xt.widget._overlays import Overlays

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((64, 64), np.uint8))
    overlays = Overlays(viewer)
    info = type("Info", (), {"tasks": ("segmentation",), "class_names": ["bg", "tumour"], "class_colors": []})()
    overlays.reserve("/tmp/a.xt.zarr", image, info)
    overlays.release()  # before the insertion's turn
    _turns(qtbot)
    assert [type(la).__name__ for la in viewer.layers] == ["Image"]
    overlays.reserve("/tmp/b.xt.zarr", image, info)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=2000)
    overlays.release()  # inserted, overlays maybe still held
    _turns(qtbot)
    assert [type(la).__name__ for la in viewer.layers] == ["Image"]
