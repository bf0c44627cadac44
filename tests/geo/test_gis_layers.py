"""GIS annotations load onto an image in the viewer as the Points / Shapes layers the Fine-tune tab trains from."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from geohelpers import UTM17, write_ortho, write_vectors
from test_gis_annotations import TRANSFORM, TREES, map_points

from napari_xt.app.finetune import points_from_layer, polygons_from_shapes
from napari_xt.widget._gis import add_gis_layers


def test_gis_file_becomes_points_and_shapes_layers(make_napari_viewer, tmp_path):
    ortho = write_ortho(tmp_path / "ortho.tif")
    a, _, c, _, e, f = tuple(TRANSFORM)[:6]
    field = shapely.box(c + 500 * a, f + 660 * e, c + 600 * a, f + 600 * e)  # pixel corners x 500..600, y 600..660
    path = write_vectors(tmp_path / "mixed.gpkg", [*map_points(TREES, UTM17), field],
                         {"class": ["pine"] * len(TREES) + ["crop"]}, UTM17)
    viewer = make_napari_viewer()
    (image_layer,) = viewer.open(str(ortho), plugin="napari-xt")
    assert image_layer.metadata["napari_xt"]["crs"] == "EPSG:32617 (WGS 84 / UTM zone 17N)"
    text = add_gis_layers(viewer, image_layer, str(path))
    assert text.startswith(f"Loaded {len(TREES)} points (mixed points) and 1 polygons (mixed polygons)")
    points, shapes = viewer.layers["mixed points"], viewer.layers["mixed polygons"]
    # what the Fine-tune tab will train from: the trees at their pixels, the field as a class-'crop' polygon
    ann = points_from_layer(points, image_layer)
    assert np.allclose(np.stack([ann.y, ann.x], 1), TREES, atol=1e-3) and ann.class_names == ["pine"]
    labels = polygons_from_shapes(shapes, image_layer, image_layer.data[0].shape[:2])
    assert labels.class_names == ["unlabelled", "crop"]
    got = labels.read((550.0, 450.0, 700.0, 650.0), (150, 200))
    assert got.sum() == pytest.approx(100 * 60, rel=0.05)
