"""The dock's fast path for showing a finished region is really taken on the pinned napari.

``widget/_partial`` (plan, read, apply) updates only a region's box of the displayed Labels tile through napari private
attributes (reached via ``napari_xt._compat``). When napari renames one, the code quietly falls back to a whole-layer
``refresh()`` - correct but slow - so these tests fail loudly instead.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_xt import _compat
from napari_xt.widget._partial import apply_boxes, plan_regions, read_boxes


def show_regions(layer, cores) -> bool:
    """The three steps the dock splits over two threads, here at once: False when the fast branch refused."""
    plan = plan_regions(layer, cores)
    return plan is not None and apply_boxes(plan, read_boxes(plan))


def test_napari_has_what_the_partial_refresh_uses():
    _compat.partial_labels_refresh_supported.cache_clear()
    assert _compat.partial_labels_refresh_supported()


@pytest.mark.parametrize("multiscale", [False, True])
def test_a_finished_region_goes_through_the_fast_branch(make_napari_viewer, qtbot, monkeypatch, multiscale):
    viewer = make_napari_viewer(show=True)  # shown, as with the dock: the canvas holds the tile's texture
    levels = [np.zeros((256, 320), dtype=np.uint8), np.zeros((128, 160), dtype=np.uint8)]
    layer = viewer.add_labels(levels if multiscale else levels[0])
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
    qtbot.waitUntil(lambda: visual.node._texture.shape[:2] == layer._slice.image.raw.shape[:2], timeout=5000)
    found = _compat.labels_slice(layer)
    assert found is not None, "napari renamed Labels._slice / _slice_input"
    before = np.array(found[0].image.view, copy=True)

    core = (64, 32, 128, 96)  # a finished region, written into the store-backed arrays as the engine does
    levels[0][64:128, 32:96] = 2
    levels[1][32:64, 16:48] = 2
    updates = []
    layer.events.labels_update.connect(lambda event: updates.append(event.offset))

    def whole_layer_refresh(*args, **kwargs):
        raise AssertionError("the slow path (refresh) was taken")

    monkeypatch.setattr(layer, "refresh", whole_layer_refresh)
    assert show_regions(layer, [core]), "the fast branch refused the layer: see napari_xt._compat"

    level = int(layer.data_level) if multiscale else 0
    step = 2**level
    y0, x0, y1, x1 = (v // step for v in core)
    oy, ox = (np.asarray(layer.corner_pixels[0], dtype=int)[-2:] if multiscale else (0, 0))
    assert updates == [(y0 - oy, x0 - ox)]
    sl = _compat.labels_slice(layer)[0]
    raw, view = np.asarray(sl.image.raw), np.asarray(sl.image.view)
    box = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    assert (raw[box] == 2).all()
    expected = _compat.labels_texture(layer, np.full((y1 - y0, x1 - x0), 2, dtype=np.uint8))
    np.testing.assert_array_equal(view[box], expected)
    outside = np.ones(view.shape[:2], dtype=bool)
    outside[box] = False
    np.testing.assert_array_equal(view[outside], before[outside])  # nothing else re-uploaded


def _shown_labels(make_napari_viewer, qtbot, shape):
    viewer = make_napari_viewer(show=True)
    data = np.zeros(shape, dtype=np.uint8)
    layer = viewer.add_labels(data)
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
    qtbot.waitUntil(lambda: visual.node._texture.shape[:2] == layer._slice.image.raw.shape[:2], timeout=5000)
    updates = []
    layer.events.labels_update.connect(lambda event: updates.append((event.offset, event.data.shape[:2])))
    return layer, data, updates


def test_neighbouring_regions_are_read_and_uploaded_as_one_box(make_napari_viewer, qtbot):
    layer, data, updates = _shown_labels(make_napari_viewer, qtbot, (256, 320))
    cores = [(0, 0, 64, 64), (0, 64, 64, 128), (64, 0, 128, 64)]  # a batch: neighbours in row-major order
    for i, (y0, x0, y1, x1) in enumerate(cores):
        data[y0:y1, x0:x1] = 1 + i
    assert show_regions(layer, cores)
    assert updates == [((0, 0), (128, 128))]  # one read, one upload (the box's fourth quarter is still 0 in both)
    np.testing.assert_array_equal(np.asarray(_compat.labels_slice(layer)[0].image.raw), data)


def test_far_apart_regions_are_read_one_by_one(make_napari_viewer, qtbot):
    layer, data, updates = _shown_labels(make_napari_viewer, qtbot, (1024, 1024))
    cores = [(0, 0, 64, 64), (900, 900, 964, 964)]
    data[0:64, 0:64], data[900:964, 900:964] = 1, 2
    assert show_regions(layer, cores)
    assert updates == [((0, 0), (64, 64)), ((900, 900), (64, 64))]  # not one 964 x 964 box
    raw = np.asarray(_compat.labels_slice(layer)[0].image.raw)
    assert (raw[:64, :64] == 1).all() and (raw[900:964, 900:964] == 2).all()
