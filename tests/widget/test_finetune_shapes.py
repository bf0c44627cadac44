"""Polygons from a napari Shapes layer as segmentation targets (issue 13): classes from a "class" feature or the
tab's class, rectangles / polygons / ellipses in the image's level-0 px, lazily rasterised per region, drawn over
painted labels; and a Fine-tune tab run on shapes alone."""

from __future__ import annotations

import numpy as np
import pytest
from dockhelpers import make_dock

from napari_xt.app.finetune import FinetuneRequest, polygons_from_shapes, segmentation_from_layers
from napari_xt.model import load_model
from napari_xt.synthetic import TissueSample
from napari_xt.train import AnnotationError
from napari_xt.train.polygons import LayeredLabels, PolygonLabels


def _shapes(viewer, **kwargs):
    rect = np.array([[10, 10], [10, 50], [40, 50], [40, 10]], float)  # (y, x): rows 10-40, cols 10-50
    tri = np.array([[60, 60], [60, 100], [100, 60]], float)
    ellipse = np.array([[0, 100], [0, 140], [40, 140], [40, 100]], float)  # box rows 0-40, cols 100-140
    path = np.array([[90, 0], [95, 40]], float)
    return viewer.add_shapes([rect, tri, ellipse, path], shape_type=["rectangle", "polygon", "ellipse", "path"],
                             name="outlines", **kwargs)


def test_shapes_become_lazy_polygon_labels_in_image_pixels(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((200, 200), np.uint8), scale=(0.5, 0.5), translate=(5, 5))
    # the shapes layer lies in world units: its data * 0.5 + 5 (the image's frame), so data px == image px
    shapes = _shapes(viewer, scale=(0.5, 0.5), translate=(5, 5),
                     features={"class": ["tumour", "stroma", "tumour", "stroma"]})
    labels = polygons_from_shapes(shapes, image, (200, 200))
    assert isinstance(labels, PolygonLabels) and labels.class_names == ["unlabelled", "stroma", "tumour"]
    assert labels.skipped == {"path shape": 1} and labels.levels == []  # nothing rasterised up front
    full = labels.read((0, 0, 200, 200), (200, 200))
    assert full[25, 30] == 2 and full[9, 30] == 0 and full[25, 51] == 0  # the rectangle (tumour)
    assert full[65, 65] == 1 and full[95, 95] == 0  # inside the triangle's corner, past its hypotenuse (stroma)
    assert full[20, 120] == 2 and full[2, 102] == 0  # the ellipse's centre; its box corner is outside it
    assert abs(int((full[0:41, 100:141] == 2).sum()) - np.pi * 20 * 20) < 60
    assert not full[85:100, :50].any()  # a path encloses nothing
    assert labels.read((0, 0, 50, 50), (25, 25))[12, 15] == 2  # a coarser read of one box

    numbered = polygons_from_shapes(_shapes(viewer), image, (200, 200), default_class=3)
    assert numbered.class_names == ["unlabelled", "class 1", "class 2", "class 3"]
    assert numbered.read((0, 0, 200, 200), (200, 200))[25, 30] == 3
    with pytest.raises(AnnotationError, match="class ids start at 1"):
        polygons_from_shapes(_shapes(viewer, features={"class": [0, 1, 1, 1]}), image, (200, 200))


def test_shapes_are_drawn_over_painted_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((200, 200), np.uint8))
    paint = np.zeros((200, 200), np.uint8)
    paint[20:30, :] = 1  # a stroke across the rectangle
    paint[150:160, 150:160] = 2
    painted = viewer.add_labels(paint, name="paint")
    shapes = _shapes(viewer, features={"class": [2, 2, 2, 2]})
    request = FinetuneRequest(image, labels_layer=painted, shapes_layer=shapes)
    seg = segmentation_from_layers(request, (200, 200))
    assert isinstance(seg, LayeredLabels) and seg.num_classes() == 3
    full = seg.read((0, 0, 200, 200), (200, 200))
    assert full[25, 30] == 2 and full[25, 5] == 1 and full[155, 155] == 2 and full[120, 120] == 0
    mask, step = seg.coarse_annotated(max_side=50)  # coarse grids of both sources, unioned
    assert mask[int(155 / step), int(155 / step)] and mask[int(25 / step), int(30 / step)]
    assert not mask[int(120 / step), int(120 / step)]


def test_fine_tune_tab_trains_on_a_shapes_layer_alone(make_napari_viewer, qtbot, tmp_path, notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    sample = TissueSample(512, 512, seed=3)
    image = viewer.add_image(np.asarray(sample.levels[0]), rgb=True, name="slide")
    boxes = [np.array([[y, x], [y, x + 80], [y + 80, x + 80], [y + 80, x]], float)
             for y, x in ((20, 20), (300, 300), (20, 300), (300, 20))]
    shapes = viewer.add_shapes(boxes, shape_type="rectangle", name="outlines",
                               features={"class": ["gland", "stroma", "gland", "stroma"]})
    tab = dock.finetune
    tab.image.value, tab.shapes_layer.value, tab.labels_layer.value = image, shapes, None
    tab.epochs.value = 1
    tab.preview.value = False
    out = tmp_path / "outlined.safetensors"
    tab.out.value = out
    tab.start()
    qtbot.waitUntil(lambda: tab.worker is None, timeout=240_000)
    assert not notes.errors(), notes.errors()
    cfg = load_model(out).config
    assert cfg.class_names["segmentation"] == ["unlabelled", "gland", "stroma"]
    assert tab.last["done"].class_counts[1] > 0 and tab.last["done"].class_counts[2] > 0
