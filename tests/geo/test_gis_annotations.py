"""Annotations drawn in a GIS land on the right pixels, say what they left out, and train a model."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import shapely
from geohelpers import ORIGIN, ORTHO_PX, UTM17, to_map, write_ortho, write_vectors
from rasterio.transform import Affine

from napari_xt.cli import main
from napari_xt.io import open_image
from napari_xt.model import load_model
from napari_xt.train import AnnotationError, points_from_file
from napari_xt.train.gis_vectors import is_gis_file, read_gis

TRANSFORM = Affine(ORTHO_PX, 0, ORIGIN[0], 0, -ORTHO_PX, ORIGIN[1])
#: tree centres in napari pixels (row, col) on the 1400 x 1200 ortho; its outer 300 px are transparent
TREES = np.array([[420.0, 410.0], [500.0, 700.0], [820.0, 520.0], [1000.0, 850.0], [640.0, 330.0]])


@pytest.fixture(scope="module")
def ortho(tmp_path_factory):
    return write_ortho(tmp_path_factory.mktemp("gis") / "ortho.tif")


def map_points(rowcol: np.ndarray, crs: str) -> list:
    """Pixel centres -> points in ``crs`` (through the image's UTM coordinates)."""
    X, Y = to_map(TRANSFORM, rowcol[:, 1] + 0.5, rowcol[:, 0] + 0.5)
    if crs != UTM17:
        X, Y = pyproj.Transformer.from_crs(UTM17, crs, always_xy=True).transform(X, Y)
    return list(shapely.points(np.stack([X, Y], axis=1)))


@pytest.mark.parametrize(("suffix", "crs"), [(".gpkg", UTM17), (".shp", "EPSG:4326"), (".geojson", "EPSG:3857")])
def test_points_reprojected_onto_the_image(ortho, tmp_path, suffix, crs):
    path = write_vectors(tmp_path / f"trees{suffix}", map_points(TREES, crs),
                         {"species": ["pine", "oak", "pine", "oak", "pine"]}, crs)
    with open_image(ortho) as img:
        assert is_gis_file(path, img)
        ann = points_from_file(path, image=img)
    assert np.allclose(np.stack([ann.y, ann.x], axis=1), TREES, atol=1e-4)
    assert ann.class_names == ["pine", "oak"] and ann.cls.tolist() == [0, 1, 0, 1, 0]
    assert getattr(ann, "gis_note", "") == ""


def test_features_off_the_image_or_untransformable_are_counted(ortho, tmp_path):
    inside = map_points(TREES[:2], "EPSG:4326")
    far = map_points(np.array([[-5000.0, 100.0]]), "EPSG:4326")  # 2.5 km north of the image
    broken = [shapely.Point(-81.0, 95.0)]  # latitude 95: no UTM coordinate exists
    line = [shapely.LineString([(-81.0, 36.1), (-81.0, 36.2)])]
    path = write_vectors(tmp_path / "mixed.gpkg", inside + far + broken + line,
                         {"class": ["tree"] * 5}, "EPSG:4326")
    with open_image(ortho) as img:
        gis = read_gis(path, img)
        ann = points_from_file(path, image=img)
    assert len(ann) == 2
    assert gis.skipped == {"outside the image": 1,
                           "that cannot be transformed to EPSG:32617 (WGS 84 / UTM zone 17N)": 1,
                           "LineString features (only points and polygons are annotations)": 1}
    assert ann.gis_note.startswith("left out 3 of 5 features: 1 LineString")
    nothing = write_vectors(tmp_path / "far.gpkg", far, {"class": ["tree"]}, "EPSG:4326")
    with open_image(ortho) as img, pytest.raises(AnnotationError, match="none of its features lie on the image"):
        read_gis(nothing, img)


def test_polygons_become_segmentation_labels(ortho, tmp_path):
    X0, Y0 = to_map(TRANSFORM, 500, 600)  # a 100 x 60 px field, pixel corners (500..600, 600..660)
    field = shapely.box(X0, Y0 - 60 * ORTHO_PX, X0 + 100 * ORTHO_PX, Y0)
    path = write_vectors(tmp_path / "fields.gpkg", [field], {"label": ["crop"]}, UTM17)
    with open_image(ortho) as img:
        labels = read_gis(path, img).polygons(img.shape[:2])
    assert labels.class_names == ["unlabelled", "crop"]
    got = labels.read((550.0, 450.0, 700.0, 650.0), (150, 200))  # level-0 box (y0, x0, y1, x1) at 1 px
    assert got.sum() == 100 * 60 and got[50:110, 50:150].all()


def test_geojson_without_crs_over_a_georeferenced_image(ortho, tmp_path):
    """RFC 7946 GeoJSON (lon/lat, no crs member) is map data; QuPath GeoJSON (pixels) is not, on the same image."""
    lonlat = map_points(TREES, "EPSG:4326")
    rfc = tmp_path / "rfc.geojson"
    rfc.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [p.x, p.y]}, "properties": {}}
        for p in lonlat]}))
    qupath = tmp_path / "qupath.geojson"
    qupath.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]}, "properties": {}}
        for y, x in TREES]}))
    with open_image(ortho) as img:
        assert is_gis_file(rfc, img) and not is_gis_file(qupath, img)
        assert np.allclose(points_from_file(rfc, image=img).y, TREES[:, 0], atol=1e-4)
        assert np.allclose(points_from_file(qupath, image=img).y, TREES[:, 0])


def test_map_annotations_need_a_georeferenced_image(tmp_path):
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((64, 64, 3), np.uint8), photometric="rgb")
    path = write_vectors(tmp_path / "t.gpkg", map_points(TREES, UTM17), {"class": ["tree"] * 5}, UTM17)
    with open_image(plain) as img, pytest.raises(AnnotationError, match="has no CRS"):
        points_from_file(path, image=img)


def test_gis_points_train_a_model(ortho, tmp_path, capsys):
    trees = np.concatenate([TREES, TREES + [60.0, 90.0]])
    path = write_vectors(tmp_path / "trees.gpkg", map_points(trees, "EPSG:4326"), {"class": ["tree"] * 10},
                         "EPSG:4326")
    out = tmp_path / "trees.safetensors"
    assert main(["train", "--image", str(ortho), "--points", str(path), "--region-encoder", "tiny", "--random-init",
                 "--region-size", "128", "--sub-region-size", "64", "--window-size", "2", "--epochs", "1",
                 "--context-options", '{"hidden": 32}', "--val-fraction", "0", "--max-windows", "2",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tasks"] == ["detection"]
    cfg = load_model(out).config
    assert cfg.class_names["detection"] == ["tree"]
    assert cfg.pixel_unit == "m" and cfg.pixel_size == pytest.approx(ORTHO_PX)
