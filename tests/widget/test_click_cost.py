"""What the click on Run costs the main thread (issue 25): the first Labels layer of a process used to build vispy's
dash-pattern table there (100-140 ms); the dock's catalogue worker now builds it before any Run."""

from __future__ import annotations

import threading
from types import SimpleNamespace

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


def _viewer_with_overlays(make_napari_viewer):
    """A viewer with an image, the dock's overlay maker over it, and a segmentation model's description."""
    from napari_xt.widget._overlays import Overlays

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((64, 64), np.uint8))
    info = SimpleNamespace(tasks=("segmentation",), class_names=["bg", "tumour"], class_colors=[])
    return viewer, image, Overlays(viewer), info


def _turns(qtbot, ms: int = 400) -> None:
    qtbot.wait(ms)  # event-loop turns: the staged steps run on timers


def test_the_run_layer_goes_in_over_several_turns_and_ends_whole_and_not_active(make_napari_viewer, qtbot):
    """The click only makes the layer model; the insertion and its visual come on later turns, its controls only
    when it is chosen, the image stays the active layer, and once the user makes it active the layer has every
    overlay napari's Labels key bindings use (they act on the active layer only)."""
    from napari.layers.labels._labels_key_bindings import reset_polygon

    from napari_xt.widget._staged_layer import DEFERRED_OVERLAYS

    viewer, image, overlays, info = _viewer_with_overlays(make_napari_viewer)
    overlays.reserve("/tmp/a.xt.zarr", image, info)
    layer = overlays.labels
    assert layer not in viewer.layers  # nothing inserted inside the click
    assert not set(DEFERRED_OVERLAYS) & set(layer._overlays)
    qtbot.waitUntil(lambda: layer in viewer.layers, timeout=2000)
    canvas = viewer.window._qt_viewer.canvas
    qtbot.waitUntil(lambda: layer in canvas.layer_to_visual, timeout=2000)  # its vispy visual, a turn later
    controls = viewer.window._qt_viewer.controls
    _turns(qtbot)
    assert layer not in controls.widgets  # its controls wait until the user chooses it
    assert viewer.layers.selection.active is image
    overlays.labels = overlays._staged = None  # as after attach: the staging object is dropped
    import gc

    gc.collect()
    viewer.layers.selection.active = layer
    assert set(DEFERRED_OVERLAYS) <= set(layer._overlays)
    assert controls.currentWidget() is controls.widgets[layer]
    reset_polygon(layer)  # Escape on the result layer: needs its polygon and brush overlays back


def test_the_layer_gets_its_controls_when_chosen_and_can_be_removed_unchosen(make_napari_viewer, qtbot):
    viewer, image, overlays, info = _viewer_with_overlays(make_napari_viewer)
    overlays.reserve("/tmp/c.xt.zarr", image, info)
    layer = overlays.labels
    overlays._staged._insert()  # the insertion's turn
    controls = viewer.window._qt_viewer.controls
    assert layer in viewer.layers and layer not in controls.widgets
    assert layer not in viewer.window._qt_viewer.canvas.layer_to_visual  # no turn for its visual yet
    viewer.layers.selection.active = layer
    assert controls.currentWidget() is controls.widgets[layer]
    overlays.reserve("/tmp/d.xt.zarr", image, info)  # another, never chosen, removed by a script
    other = overlays.labels
    overlays._staged._insert()
    overlays._staged = None
    viewer.layers.remove(other)  # napari's controls look it up on removal: no error
    assert other not in viewer.layers and other not in controls.widgets
    overlays.reserve("/tmp/e.xt.zarr", image, info)
    overlays._staged.finish()  # the run was prepared first: in and drawn at once
    assert overlays.labels in viewer.window._qt_viewer.canvas.layer_to_visual
    viewer.layers.clear()  # as closing the viewer does
    assert len(viewer.layers) == 0 and not controls.widgets


def test_a_run_that_never_starts_leaves_no_layer_whether_or_not_it_was_inserted(make_napari_viewer, qtbot):
    viewer, image, overlays, info = _viewer_with_overlays(make_napari_viewer)
    overlays.reserve("/tmp/a.xt.zarr", image, info)
    overlays.release()  # before the insertion's turn
    _turns(qtbot)
    assert [type(la).__name__ for la in viewer.layers] == ["Image"]
    overlays.reserve("/tmp/b.xt.zarr", image, info)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=2000)
    overlays.release()  # inserted, overlays maybe still held
    _turns(qtbot)
    assert [type(la).__name__ for la in viewer.layers] == ["Image"]


def test_staging_works_through_the_proxied_viewer_a_plugin_dock_gets(make_napari_viewer, qtbot):
    """napari hands a plugin's dock a ``PublicOnlyProxy`` of the viewer, whose layer list returns proxies (another
    object each time): the staged layer must still know itself when chosen, and when removed before its controls
    were made (closing the demo's viewer raised a KeyError in napari's removal)."""
    from napari.utils._proxies import PublicOnlyProxy

    from napari_xt.widget._overlays import Overlays
    from napari_xt.widget._staged_layer import DEFERRED_OVERLAYS

    viewer = make_napari_viewer()
    proxied = PublicOnlyProxy(viewer)
    image = proxied.add_image(np.zeros((64, 64), np.uint8))
    overlays = Overlays(proxied)
    info = SimpleNamespace(tasks=("segmentation",), class_names=["bg", "tumour"], class_colors=[])
    overlays.reserve("/tmp/p.xt.zarr", image, info)
    layer = overlays.labels
    overlays._staged.finish()  # inserted and drawn, its controls not made yet
    assert overlays._find("labels", "/tmp/p.xt.zarr") is layer  # attach reuses the reserved layer by identity
    viewer.layers.selection.active = viewer.layers[-1]
    assert set(DEFERRED_OVERLAYS) <= set(layer._overlays)  # it knew itself behind the proxy
    overlays.reserve("/tmp/q.xt.zarr", image, info)
    overlays._staged.finish()
    proxied.layers.clear()  # as closing the demo does: its controls were never made
    assert len(viewer.layers) == 0 and not viewer.window._qt_viewer.controls.widgets


def test_one_update_leaves_the_viewer_and_the_visual_in_step_with_the_layer(make_napari_viewer, qtbot):
    """Data, scale and translate changed with their listeners held back: the viewer's extent and the layer's vispy
    transform must be what napari's own updates would make of the new settings (the run's layer lies over its
    image), and only the layer's own transform changed."""
    from napari_xt.widget._overlays import _one_update

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((300, 200), np.uint8))
    layer = viewer.add_labels([np.zeros((2, 2), np.uint8), np.zeros((1, 1), np.uint8)], multiscale=True)
    _turns(qtbot, 100)
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
    before = (viewer.dims.range, np.array(visual.node.transform.matrix))
    with _one_update(viewer, layer):
        layer.data = [np.zeros((256, 192), np.uint8), np.zeros((128, 96), np.uint8)]
        layer.scale, layer.translate = (2.0, 2.0), (10.5, -3.5)
    after = (viewer.dims.range, np.array(visual.node.transform.matrix))
    assert after[0] != before[0] and not np.allclose(after[1], before[1])  # the update happened...
    viewer._on_layers_change()
    visual._on_matrix_change()
    assert viewer.dims.range == after[0]  # ...and napari's own updates find nothing left to change
    np.testing.assert_allclose(visual.node.transform.matrix, after[1])
    np.testing.assert_allclose(layer.scale, (2.0, 2.0))
    np.testing.assert_allclose(layer.translate, (10.5, -3.5))
