"""GeoJSON export read back with json + shapely and rasterised onto the store's own label grid."""

import json

import numpy as np
import pytest
from exporthelpers import (
    COLORS,
    DOWNSAMPLE,
    NAMES,
    PIXEL_UM,
    ResultStore,
    StoreSpec,
    iou,
    rasterise,
)
from scipy import ndimage
from shapely.geometry import shape

from napari_xt.export import ExportError, export_geojson


def _features(path, kind):
    doc = json.loads(path.read_text())
    return doc, [f for f in doc["features"] if f["properties"]["objectType"] == kind]


def _by_class(features, grid_shape, px_per_cell):
    out = {}
    for f in features:
        cls = f["properties"]["class_id"]
        out.setdefault(cls, np.zeros(grid_shape, bool))
        out[cls] |= rasterise(f["geometry"], grid_shape, px_per_cell)
    return out


def test_unsimplified_polygons_give_back_every_pixel_across_tile_borders(store, labels, tmp_path):
    out = export_geojson(store, tmp_path / "seg.geojson", simplify=0, tile=150)  # tile and chunk borders cut objects
    doc, annotations = _features(out, "annotation")
    assert doc["type"] == "FeatureCollection" and doc["napari_xt"]["partial"] is False
    assert not list(tmp_path.glob(".*"))  # the temporary sibling is gone

    masks = _by_class(annotations, labels.shape, DOWNSAMPLE)
    recon = np.zeros_like(labels)
    for cls in (1, 2, 3):
        assert iou(masks[cls], labels == cls) >= 0.98
        recon[masks[cls]] = cls
        n_objects = ndimage.label(labels == cls)[1]  # 4-connected objects
        assert sum(f["properties"]["class_id"] == cls for f in annotations) == n_objects
    assert (recon != labels).sum() == 0  # exact: contours cut corners, but never past a pixel centre
    assert 0 not in masks  # background is not exported

    band = [f for f in annotations if f["properties"]["class_id"] == 2]
    assert len(band) == 1 and shape(band[0]["geometry"]).geom_type == "Polygon"  # crossed 6 tiles: one feature

    rings = [shape(f["geometry"]) for f in annotations if f["properties"]["name"] == "vessel"]
    holed = [g for g in rings if len(g.interiors) == 1]
    assert len(holed) == 1
    hole_px2 = shape({"type": "Polygon", "coordinates": [holed[0].interiors[0].coords]}).area
    assert hole_px2 == pytest.approx(np.pi * 32**2 * DOWNSAMPLE**2, rel=0.05)

    for f in annotations:
        props = f["properties"]
        cls = props["class_id"]
        assert props["classification"] == {"name": NAMES[cls], "color": COLORS[cls]}
        area = props["measurements"]["area_px2"]
        assert area == pytest.approx(shape(f["geometry"]).area, rel=1e-6)
        assert props["measurements"]["area_um2"] == pytest.approx(area * PIXEL_UM**2)
    total = sum(f["properties"]["measurements"]["area_px2"] for f in annotations)
    assert total == pytest.approx(np.count_nonzero(labels) * DOWNSAMPLE**2, rel=0.01)


def test_default_simplification_stays_close_and_is_smaller(store, labels, tmp_path):
    exact = export_geojson(store, tmp_path / "exact.geojson", simplify=0, include_detections=False)
    simple = export_geojson(store, tmp_path / "simple.geojson", include_detections=False)
    _, annotations = _features(simple, "annotation")
    masks = _by_class(annotations, labels.shape, DOWNSAMPLE)
    for cls in (1, 2, 3):
        assert iou(masks[cls], labels == cls) >= 0.95
    assert simple.stat().st_size < 0.6 * exact.stat().st_size
    for f in annotations:
        assert shape(f["geometry"]).is_valid


def test_coarser_level_keeps_level0_coordinates(store, tmp_path):
    out = export_geojson(store, tmp_path / "l1.geojson", level=1, simplify=0, include_detections=False, tile=100)
    doc, annotations = _features(out, "annotation")
    level1 = store.labels[1][:]
    assert doc["napari_xt"]["level0_px_per_traced_px"] == 4.0
    masks = _by_class(annotations, level1.shape, 4.0)
    for cls in (1, 2, 3):
        assert iou(masks[cls], level1 == cls) >= 0.98
    with pytest.raises(ExportError, match="levels 0..3, not level 7"):
        export_geojson(store, tmp_path / "bad.geojson", level=7)
    assert not (tmp_path / "bad.geojson").exists()


@pytest.mark.parametrize("kind", ["points", "boxes"])
def test_detections_match_the_store(store, tmp_path, kind):
    out = export_geojson(store, tmp_path / f"{kind}.geojson", detections_as=kind, include_segmentation=False)
    doc, detections = _features(out, "detection")
    assert len(doc["features"]) == len(detections)
    det = store.detections()
    assert len(detections) == len(det["y"]) == 12
    for i, f in enumerate(detections):
        geom = shape(f["geometry"])
        x, y = float(det["x"][i]) + 0.5, float(det["y"][i]) + 0.5  # pixel centres -> QuPath's corner origin
        if kind == "points":
            assert (geom.x, geom.y) == pytest.approx((x, y), abs=1e-3)
        else:
            w, h = float(det["w"][i]), float(det["h"][i])
            assert geom.bounds == pytest.approx((x - w / 2, y - h / 2, x + w / 2, y + h / 2), abs=1e-3)
        props = f["properties"]
        assert props["classification"]["name"] == ["nucleus", "mitosis"][int(det["cls"][i])]
        assert len(props["classification"]["color"]) == 3
        assert props["measurements"]["score"] == pytest.approx(float(det["score"][i]), abs=1e-6)
        assert props["region_id"] == int(det["region_id"][i])


def test_tracing_random_labels_matches_connected_components(tmp_path):
    """Thousands of ragged objects, holes in holes, 37 px tiles over 64 px chunks: every object exactly once."""
    rng = np.random.default_rng(3)
    shape_ = (111, 143)
    lab = (ndimage.gaussian_filter(rng.random(shape_), 2) * 40).astype(np.uint8) % 4
    spec = StoreSpec(shape=shape_, num_classes=4, region_count=1, chunk=64)
    store = ResultStore.create(tmp_path / "random.zarr", spec, {})
    store.write_region(0, (0, 0, *shape_), lab)
    store.finish({})
    out = export_geojson(store.path, tmp_path / "random.geojson", simplify=0, tile=37)
    _, annotations = _features(out, "annotation")
    recon = np.zeros_like(lab)
    for cls, mask in _by_class(annotations, shape_, 1.0).items():
        recon[mask] = cls
        assert sum(f["properties"]["class_id"] == cls for f in annotations) == ndimage.label(lab == cls)[1]
    assert (recon != lab).sum() == 0
    assert annotations[0]["properties"]["name"].startswith("class ")  # a store without class names


def test_bad_arguments_are_refused(store, tmp_path):
    out = tmp_path / "x.geojson"
    for kwargs, message in [({"detections_as": "circles"}, "'points' or 'boxes'"), ({"simplify": -1}, ">= 0"),
                            ({"include_segmentation": False, "include_detections": False}, "nothing to export")]:
        with pytest.raises(ExportError, match=message):
            export_geojson(store, out, **kwargs)
    assert not out.exists()


def test_detections_default_to_boxes_when_the_model_measured_sizes(store, tmp_path, monkeypatch):
    """``auto``: a store whose detections carry sizes (a box-trained model) exports boxes; sizes of zero (a model
    trained from points alone) export points."""
    import exporthelpers

    assert (store.detections()["w"] > 0).all()
    _, sized = _features(export_geojson(store, tmp_path / "auto.geojson", include_segmentation=False), "detection")
    assert {f["geometry"]["type"] for f in sized} == {"Polygon"}
    sizes = exporthelpers.detections_for
    monkeypatch.setattr(exporthelpers, "detections_for", lambda core: {
        **sizes(core), "h": np.zeros(3, np.float32), "w": np.zeros(3, np.float32)})
    points_store = exporthelpers.build_store(tmp_path / "points.xt.zarr")
    assert (points_store.detections()["w"] == 0).all()
    _, points = _features(export_geojson(points_store, tmp_path / "p.geojson", include_segmentation=False),
                          "detection")
    assert points and {f["geometry"]["type"] for f in points} == {"Point"}
