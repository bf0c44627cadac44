"""Suggestions in the Fine-tune tab (issue 24), in a real viewer: Train → the suggestions layer → Next → annotate
there → Train again, for segmentation (paint) and detection (points; the visited region joins the complete area)."""

from __future__ import annotations

import numpy as np
from dockhelpers import make_dock
from test_finetune_points import discs

from napari_xt.app.suggest import COLD_REGIONS
from napari_xt.synthetic import TissueSample
from napari_xt.widget import _suggest as suggest_widget
from napari_xt.widget._fields import camera, camera_center
from napari_xt.widget._finetune import FRESH
from napari_xt.widget._finetune_preview import canvas_size, visible_box
from napari_xt.widget._suggest import AREA_NAME, HEAT_NAME, SUGGESTIONS_NAME


def _train(tab, qtbot, out):
    tab.out.value = out
    tab.start()
    qtbot.waitUntil(lambda: tab.worker is None and tab.preview_worker is None and tab.suggest.worker is None,
                    timeout=300_000)


def _quick_tiny(tab, epochs=1):
    tab.base.value = FRESH + "tiny"
    tab.mode.value = "quick"
    tab.epochs.value = epochs
    tab.preview.value = False  # the preview has its own tests; here the suggestions are what is waited for
    tab.suggest.top.value = 3
    # on by default, bounded: the whole image only up to WHOLE_IMAGE_REGIONS regions, else the view
    assert tab.suggest.auto.value and tab.suggest.where.value == "auto"


def _layer(viewer, name):
    return next(lay for lay in viewer.layers if lay.name == name)


def test_train_suggest_next_paint_there_train_again(make_napari_viewer, qtbot, tmp_path, notes, monkeypatch):
    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(tmp_path / "features"))
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    sample = TissueSample(768, 768, seed=3)
    truth = np.asarray(sample.label_levels[0])
    image = viewer.add_image(np.asarray(sample.levels[0]), rgb=True, name="slide")
    painted = np.zeros_like(truth)
    painted[:256, :256] = truth[:256, :256] + 1  # one region painted: the model knows that corner only
    labels = viewer.add_labels(painted, name="paint")
    tab = dock.finetune
    tab.image.value, tab.labels_layer.value = image, labels
    _quick_tiny(tab)
    _train(tab, qtbot, tmp_path / "first.safetensors")
    assert not notes.errors(), notes.errors()
    found = tab.suggest.found
    assert found is not None and found.task == "segmentation" and len(found) == 3 and found.regions == 9
    shapes, heat = _layer(viewer, SUGGESTIONS_NAME), _layer(viewer, HEAT_NAME)
    assert len(shapes.data) == 3 and list(shapes.features["rank"]) == [1, 2, 3]
    assert np.allclose(np.asarray(shapes.data[0])[[0, 2]], found.boxes[0].reshape(2, 2))  # level-0 corners
    assert heat.data.shape == found.heat.shape and heat.data.max() > 0
    # neither is offered as annotations or as the image to train on
    assert shapes not in tab.shapes_layer.choices and shapes not in tab.area.choices
    assert heat not in tab.image.choices
    centres = (found.boxes[:, :2] + found.boxes[:, 2:]) / 2
    assert min(np.hypot(*(centres[a] - centres[b])) for a in range(3) for b in range(a)) >= 2 * 256

    tab.suggest.go(1)  # Next: the view centres on the best suggestion and shows it whole
    y0, x0, y1, x1 = found.boxes[0]
    assert np.allclose(camera_center(viewer), [(y0 + y1) / 2 - 0.5, (x0 + x1) / 2 - 0.5])
    vy0, vx0, vy1, vx1 = visible_box(viewer, image)
    assert vy0 <= y0 and vx0 <= x0 and vy1 >= y1 and vx1 >= x1 and camera(viewer).zoom > 0
    tab.suggest.go(1)
    tab.suggest.go(-1)
    assert tab.suggest.current == 0 and tab.suggest.visited == {0, 1}
    yy, xx = slice(int(y0), int(y1)), slice(int(x0), int(x1))
    painted[yy, xx] = truth[yy, xx] + 1  # annotate there
    labels.refresh()

    _train(tab, qtbot, tmp_path / "second.safetensors")
    assert not notes.errors(), notes.errors()
    trainer = tab.handle.trainer
    assert tab.last["start"].base == str(tmp_path / "first.safetensors")  # continued from the first model
    plan = trainer.windows.plans[0]
    region = next(r for r in plan.regions if r.core[0] <= (y0 + y1) / 2 < r.core[2]
                  and r.core[1] <= (x0 + x1) / 2 < r.core[3])
    assert any(ref.window == region.window for ref in trainer.windows.windows)  # trained on what was painted there
    assert (float(y0), float(x0), float(y1), float(x1)) in tab.suggest.annotated
    second = tab.suggest.found
    assert second is not found and not any(np.allclose(b, found.boxes[0]) for b in second.boxes)  # not again
    assert _layer(viewer, SUGGESTIONS_NAME) is shapes and len(shapes.data) == 3  # one layer, refilled
    assert second.info["scope"] == "image"  # 9 regions: the whole image

    # a larger image than the automatic scope runs whole (here: more than 4 regions): only the view is scored
    monkeypatch.setattr(suggest_widget, "WHOLE_IMAGE_REGIONS", 4)
    camera(viewer).center = (128.0, 128.0)
    camera(viewer).zoom = float(np.min(canvas_size(viewer))) / 300  # about the top-left region in view
    tab.suggest.now_button.clicked.emit()
    qtbot.waitUntil(lambda: tab.suggest.worker is None and tab.suggest.found is not second, timeout=120_000)
    third = tab.suggest.found
    assert third.info["scope"] == "view" and third.regions < 9 and "in the view" in tab.suggest.status.value


def test_detection_a_visited_and_marked_suggestion_becomes_complete(make_napari_viewer, qtbot, tmp_path, notes,
                                                                    monkeypatch):
    monkeypatch.setenv("NAPARI_XT_FEATURE_CACHE", str(tmp_path / "features"))
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    pixels, centres = discs(768, 60, seed=2)
    image = viewer.add_image(pixels, rgb=True, name="orthophoto")
    corner = (centres[:, 0] < 256) & (centres[:, 1] < 256)
    points = viewer.add_points(centres[corner], size=18, name="trees")
    tab = dock.finetune
    tab.image.value, tab.points.value = image, points
    _quick_tiny(tab, epochs=2)
    _train(tab, qtbot, tmp_path / "first.safetensors")
    assert not notes.errors(), notes.errors()
    found = tab.suggest.found
    assert found is not None and found.task == "detection" and found.threshold is not None and len(found) == 3
    # the last Train's regions tell how far a detector's doubt is trusted; the first suggestion is its doubt's best
    trained = tab.suggest.trained_regions()
    assert trained and found.info["labelled"] == trained and found.reason(0) == "doubt"
    assert found.info["explore"] == round(COLD_REGIONS / (COLD_REGIONS + trained), 3)
    area = _layer(viewer, SUGGESTIONS_NAME)
    assert area not in tab.area.choices
    start_area = viewer.add_shapes([np.array([[0, 0], [0, 256], [256, 256], [256, 0]])], shape_type="rectangle",
                                   name="start area")  # where the first points are complete
    tab.area.value = start_area
    tab.suggest.go(1)
    y0, x0, y1, x1 = found.boxes[0]
    inside = (centres[:, 0] >= y0) & (centres[:, 0] < y1) & (centres[:, 1] >= x0) & (centres[:, 1] < x1)
    assert inside.any(), "the test image needs discs in the suggested region"
    assert len(start_area.data) == 1
    points.add(centres[inside & ~corner][:1])  # the first object marked there: the region joins the complete area
    assert len(start_area.data) == 2
    assert np.allclose(np.asarray(start_area.data[1])[[0, 2]], [[y0, x0], [y1, x1]])
    points.add(centres[inside & ~corner][1:])
    assert len(start_area.data) == 2  # once
    tab.suggest.go(1)  # visited, nothing marked: stays out of the area
    assert len(start_area.data) == 2

    _train(tab, qtbot, tmp_path / "second.safetensors")
    assert not notes.errors(), notes.errors()
    items = tab.handle.trainer.images
    assert len(items) == 2  # one training item per complete area
    assert np.allclose(np.asarray(items[1].detection.area)[[0, 2]], [[y0, x0], [y1, x1]])
    assert len(items[1].detection) == len(points.data)
    assert tab.suggest.found is not found
    assert not any(np.allclose(b, found.boxes[0]) for b in tab.suggest.found.boxes)


def test_a_new_complete_area_layer_is_made_and_chosen(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    """Without a 'Complete in' layer, the first marked suggestion makes one and the tab uses it."""
    from napari_xt.app.suggest import Suggestions

    viewer, dock = make_dock(make_napari_viewer, qtbot)
    pixels, centres = discs(512, 20, seed=1)
    image = viewer.add_image(pixels, rgb=True, name="ortho")
    points = viewer.add_points(np.zeros((0, 2)), name="marks")
    tab = dock.finetune
    tab.image.value, tab.points.value = image, points
    tab.suggest.now_button.clicked.emit()
    assert "Train first" in tab.suggest.status.value and tab.suggest.worker is None
    boxes = np.array([[0, 0, 256, 256], [256, 256, 512, 512]], float)
    found = Suggestions(boxes, np.array([2.0, 1.0]), np.array([0, 1]), np.zeros((4, 4), np.float32), 128.0,
                        "detection", "undecided peaks", 0.3, (512, 512), 4)
    tab.suggest._image_layer = image
    tab.suggest.display(found, image)
    tab.suggest.go(1)
    assert tab.area.value is None
    points.add([[100.0, 120.0]])
    area = _layer(viewer, AREA_NAME)
    assert tab.area.value is area and len(area.data) == 1
    points.add([[400.0, 400.0]])  # in suggestion 2, not visited: no area
    assert len(area.data) == 1
