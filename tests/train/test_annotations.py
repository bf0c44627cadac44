"""Annotation readers: label images at any resolution, points from CSV/GeoJSON, image classes; clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_xt.train import (
    AnnotationError,
    SegmentationLabels,
    image_classes_from_csv,
    points_from_csv,
    points_from_file,
    points_from_geojson,
)


def test_labels_painted_on_a_coarser_level_read_back_at_any_box():
    full = np.zeros((800, 600), np.uint8)
    full[100:300, 200:400] = 2
    coarse = full[::4, ::4]  # painted on a 4x smaller level
    labels = SegmentationLabels.from_array(coarse, full.shape)
    assert labels.downsamples == [4.0]
    block = labels.read((96, 196, 304, 404), (52, 52))  # level-0 box, read at 4 px per output px
    assert block[2:-2, 2:-2].min() == 2 and block[0, 0] == 0
    past = labels.read((760, 560, 840, 640), (20, 20))  # partly outside the image: ignore value there
    assert past[-1, -1] == labels.ignore


def test_labels_that_do_not_cover_the_image_are_refused():
    with pytest.raises(AnnotationError, match="does not cover"):
        SegmentationLabels.from_array(np.zeros((100, 300)), (800, 600))
    with pytest.raises(AnnotationError, match="2D"):
        SegmentationLabels.from_array(np.zeros((8, 8, 3)), (8, 8))


def test_points_csv_with_sizes_classes_and_errors(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x,y,width,height,class\n10,20,4,6,ship\n30,40,,,buoy\n")
    ann = points_from_csv(path)
    assert ann.class_names == ["ship", "buoy"]
    np.testing.assert_array_equal(ann.x, [10, 30])
    np.testing.assert_array_equal(ann.h[:1], [6])
    assert np.isnan(ann.h[1])
    with pytest.raises(AnnotationError, match="not one of the classes"):
        points_from_csv(path, class_names=["ship"])
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(AnnotationError, match="'x' and 'y'"):
        points_from_csv(bad)
    bad.write_text("x,y\n1,zz\n")
    with pytest.raises(AnnotationError, match="not a number"):
        points_from_csv(bad)


def test_points_from_qupath_geojson(tmp_path):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.0, 7.0]},
         "properties": {"objectType": "annotation", "classification": {"name": "cell", "color": [1, 2, 3]}}},
        {"type": "Feature", "geometry": {"type": "Polygon",
                                          "coordinates": [[[0, 0], [10, 0], [10, 4], [0, 4], [0, 0]]]},
         "properties": {"classification": {"name": "ship"}}},
    ]}
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(doc))
    ann = points_from_geojson(path)
    assert ann.class_names == ["cell", "ship"]
    np.testing.assert_allclose(ann.y, [7.0, 2.0])
    np.testing.assert_allclose(ann.x, [5.0, 5.0])
    np.testing.assert_allclose(ann.h[1:], [4.0])
    np.testing.assert_allclose(ann.w[1:], [10.0])
    with pytest.raises(AnnotationError, match=r"\.csv or \.geojson"):
        points_from_file(tmp_path / "a.txt")


def test_image_classes_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("image,class\n/data/a.svs,tumour\nb.svs,normal\n")
    got = image_classes_from_csv(path, ["x/a.svs", "b.svs"])
    assert [g.index for g in got] == [1, 0] and got[0].class_names == ["normal", "tumour"]
    with pytest.raises(AnnotationError, match="no class given for image c.svs"):
        image_classes_from_csv(path, ["c.svs"])
