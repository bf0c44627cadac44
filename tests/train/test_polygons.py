"""QuPath GeoJSON polygons as segmentation labels: holes, multipolygons, class names, unknown names reported, and
only the polygons touching a box are rasterised."""

from __future__ import annotations

import json

import pytest

from napari_xt.train import AnnotationError
from napari_xt.train.polygons import PolygonLabels, describe_skipped


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feature(geometry, name=None):
    props = {"objectType": "annotation"}
    if name:
        props["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _write(tmp_path, features):
    path = tmp_path / "slide.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_polygons_holes_and_multipolygons_rasterise_to_class_ids(tmp_path):
    path = _write(tmp_path, [
        _feature({"type": "Polygon", "coordinates": [_square(10, 10, 90, 90), _square(40, 40, 60, 60)]}, "Tumor"),
        _feature({"type": "MultiPolygon", "coordinates": [[_square(100, 0, 120, 20)], [_square(0, 100, 20, 120)]]},
                 "Stroma"),
        _feature({"type": "Polygon", "coordinates": [_square(150, 150, 160, 160)]}, "Necrosis"),  # not asked for
        _feature({"type": "Polygon", "coordinates": [_square(170, 170, 180, 180)]}),  # no class
        _feature({"type": "Point", "coordinates": [5, 5]}, "Tumor"),
    ])
    labels = PolygonLabels.from_geojson(path, (200, 200), class_names=["unlabelled", "Tumor", "Stroma"])
    assert labels.num_classes() == 3
    full = labels.read((0, 0, 200, 200), (200, 200))
    assert full[20, 20] == 1 and full[50, 50] == 0  # inside the tumour, inside its hole (unlabelled)
    assert full[10, 110] == 2 and full[110, 10] == 2  # both parts of the multipolygon
    assert full[155, 155] == 0 and full[175, 175] == 0 and full[5, 5] == 0  # skipped features label nothing
    assert full[95, 95] == 0
    assert int((full == 1).sum()) == 80 * 80 - 20 * 20
    assert labels.skipped == {"Necrosis": 1, "(no class)": 1, "Point feature": 1}
    assert "Necrosis x1" in describe_skipped(labels)
    half = labels.read((0, 0, 200, 200), (100, 100))  # a coarser read: the same shapes at 2 px per label px
    assert half[10, 10] == 1 and half[25, 25] == 0 and half[5, 55] == 2
    box = labels.read((100, 0, 140, 40), (40, 40))  # a box touching only the multipolygon's second part
    assert box[5, 5] == 2 and box[30, 30] == 0


def test_class_names_come_from_the_file_when_not_given_and_an_empty_result_is_refused(tmp_path):
    path = _write(tmp_path, [_feature({"type": "Polygon", "coordinates": [_square(0, 0, 8, 8)]}, "b"),
                             _feature({"type": "Polygon", "coordinates": [_square(8, 8, 16, 16)]}, "a")])
    labels = PolygonLabels.from_geojson(path, (64, 64))
    assert labels.class_names == ["unlabelled", "a", "b"]
    mask, step = labels.coarse_annotated()
    assert step == 1 and mask[2, 2] and mask[12, 12] and not mask[40, 40]
    with pytest.raises(AnnotationError, match="no polygon with a known class.*a x1"):
        PolygonLabels.from_geojson(path, (64, 64), class_names=["unlabelled", "b2"])
