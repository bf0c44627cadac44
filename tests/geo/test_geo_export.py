"""Results go back onto the map: GeoTIFF (COG), GeoPackage and RFC 7946 GeoJSON read back by rasterio/pyogrio with
the source's CRS and transform, every feature inside the image's footprint; slides keep pixel coordinates."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pyproj
import pytest
import rasterio
import shapely
from geohelpers import write_scene
from rasterio.transform import Affine
from shapely.geometry import shape

from napari_xt.cli import main
from napari_xt.engine.plan import make_plan
from napari_xt.export import ExportError, export_geojson, export_geotiff, export_gpkg
from napari_xt.io import open_image
from napari_xt.store import ResultStore, StoreSpec

UTM31 = Affine(20.0, 0, 620000.0, 0, -20.0, 4830000.0)  # demo-sar's own 20 m: analysis px == image px
DEG = Affine(2e-4, 0, 4.48, 0, -2e-4, 43.62)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """demo-sar run end to end on a projected and on a geographic scene (the 23 PiB case of the issue)."""
    root = tmp_path_factory.mktemp("geoexport")
    out = {}
    for name, crs, transform in (("utm", "EPSG:32631", UTM31), ("deg", "EPSG:4326", DEG)):
        image = write_scene(root / f"{name}.tif", crs, transform, h=180, w=260)
        store = root / f"{name}.xt.zarr"
        assert main(["predict", str(image), "--model", "demo-sar", "--out", str(store), "--region-size", "128",
                     "--score-threshold", "0.05"]) == 0
        out[name] = (image, store)
    return out


def footprint(image_path, crs=None) -> shapely.Polygon:
    """The image outline in its CRS (or reprojected to ``crs``), densified so it stays the true outline."""
    with rasterio.open(image_path) as ds:
        b = ds.bounds
        poly = shapely.segmentize(shapely.box(b.left, b.bottom, b.right, b.top), (b.right - b.left) / 50)
        if crs is None:
            return poly
        t = pyproj.Transformer.from_crs(ds.crs.to_wkt(), crs, always_xy=True)
    return shapely.transform(poly, lambda c: np.stack(t.transform(c[:, 0], c[:, 1]), axis=1))


@pytest.mark.parametrize("name", ["utm", "deg"])
def test_geotiff_round_trip(stores, tmp_path, name):
    image, store_path = stores[name]
    out = export_geotiff(store_path, tmp_path / "labels.tif")
    store = ResultStore.open(store_path)
    with rasterio.open(image) as src, rasterio.open(out) as ds:
        assert ds.crs == src.crs
        f = store.spec.downsample_to_level0
        expected = src.transform @ Affine.scale(f)
        assert tuple(ds.transform)[:6] == pytest.approx(tuple(expected)[:6], rel=1e-9)
        if name == "utm":
            assert tuple(ds.transform) == tuple(src.transform)  # same grid: transform equal, not just close
        assert np.array_equal(ds.read(1), np.asarray(store.labels[0]))
        assert len(ds.overviews(1)) == len(store.labels) - 1
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        names = json.loads(ds.tags(1)["CLASS_NAMES"])
        assert names == list(store.spec.class_names)
        assert ds.colormap(1)[1][:3] == tuple(store.spec.class_colors[1][:3])
    cats = [c.text for c in ET.parse(f"{out}.aux.xml").iter("Category")]
    assert cats == names


@pytest.mark.parametrize("name", ["utm", "deg"])
def test_gpkg_layers_in_the_image_crs_inside_the_footprint(stores, tmp_path, name):
    image, store_path = stores[name]
    counts: dict = {}
    out = export_gpkg(store_path, tmp_path / "results.gpkg", counts=counts, detections_as="points")
    store = ResultStore.open(store_path)
    layers = dict(pyogrio.list_layers(out))
    assert layers == {"detections": "Point", "segmentation": "MultiPolygon"}
    outline = footprint(image)
    with rasterio.open(image) as src:
        crs = src.crs
    for layer, fields in (("detections", {"class", "class_id", "score"}), ("segmentation", {"class", "area_m2"})):
        info = pyogrio.read_info(out, layer=layer)
        assert pyproj.CRS(info["crs"]) == pyproj.CRS(crs.to_wkt())
        assert fields <= set(info["fields"])
        _, _, wkb, values = pyogrio.raw.read(out, layer=layer)
        geoms = shapely.from_wkb(wkb)
        assert len(geoms) == counts[layer] > 0
        assert shapely.within(geoms, outline.buffer(1e-9)).all()
    assert counts["detections"] == len(store.detections()["y"])
    # areas: the class polygons cover the labelled pixels (m² of a 20 m or ~16-22 m pixel)
    _, _, wkb, values = pyogrio.raw.read(out, layer="segmentation", columns=["class_id", "area_m2", "area_px"])
    labels = np.asarray(store.labels[0])
    for cls in np.unique(values[0]):
        px = values[2][values[0] == cls].sum() / store.spec.downsample_to_level0**2
        assert px == pytest.approx((labels == cls).sum(), rel=0.1)
    assert (values[1] > 0).all()


@pytest.mark.parametrize("name", ["utm", "deg"])
def test_geojson_is_rfc7946_lonlat_for_a_georeferenced_image(stores, tmp_path, name):
    image, store_path = stores[name]
    out = export_geojson(store_path, tmp_path / "r.geojson", detections_as="boxes")
    doc = json.loads(out.read_text())
    assert "crs" not in doc and "RFC 7946" in doc["napari_xt"]["coordinates"]
    outline = footprint(image, "EPSG:4326")
    geoms = [shape(f["geometry"]) for f in doc["features"]]
    # every vertex on the image (an edge between two far vertices is a lon/lat chord of a slightly curved image edge)
    vertices = shapely.points(np.concatenate([shapely.get_coordinates(g) for g in geoms]))
    assert len(geoms) > 0 and shapely.contains(outline.buffer(1e-8), vertices).all()
    assert all(g.exterior.is_ccw for g in geoms if g.geom_type == "Polygon")  # right-hand rule after reprojection
    # --coords pixel keeps QuPath's level-0 pixels
    px = json.loads(export_geojson(store_path, tmp_path / "px.geojson", coords="pixel").read_text())
    with open_image(image) as img:
        h, w = img.shape[:2]
    pts = np.concatenate([shapely.get_coordinates(shape(f["geometry"])) for f in px["features"]])
    assert pts[:, 0].max() <= w + 1 and pts[:, 1].max() <= h + 1 and pts.min() >= -1


def test_slides_keep_pixels_and_refuse_map_exports(tmp_path):
    spec = StoreSpec(shape=(64, 64), num_classes=2, class_names=["bg", "cell"], region_count=1, chunk=64,
                     min_level_size=32, downsample_to_level0=1.0)
    meta = {"model_checksum": "m", "image_fingerprint": "i", "plan_checksum": "p", "model": "t",
            "image": "/x/slide.svs", "image_shape": [64, 64, 3], "image_pixel_size": [0.5, 0.5],
            "image_pixel_unit": "um", "plan": {"windows": [[0]]}}
    store = ResultStore.create(tmp_path / "s.xt.zarr", spec, meta)
    lab = np.zeros((64, 64), np.uint8)
    lab[10:30, 20:40] = 1
    store.write_region(0, (0, 0, 64, 64), lab)
    store.finish({})
    doc = json.loads(export_geojson(tmp_path / "s.xt.zarr", tmp_path / "s.geojson").read_text())
    assert "pixels" in doc["napari_xt"]["coordinates"]
    assert shapely.get_coordinates(shape(doc["features"][0]["geometry"])).max() <= 64
    for call in (lambda: export_geotiff(tmp_path / "s.xt.zarr", tmp_path / "s.tif"),
                 lambda: export_gpkg(tmp_path / "s.xt.zarr", tmp_path / "s.gpkg"),
                 lambda: export_geojson(tmp_path / "s.xt.zarr", tmp_path / "m.geojson", coords="map")):
        with pytest.raises(ExportError, match="without a CRS"):
            call()
    assert not (tmp_path / "s.tif").exists() and not (tmp_path / "s.gpkg").exists()


def test_cli_exports(stores, tmp_path, capsys):
    _, store_path = stores["deg"]
    for fmt, suffix in (("geotiff", "tif"), ("gpkg", "gpkg"), ("geojson", "geojson")):
        assert main(["export", str(store_path), "--format", fmt, "--out", str(tmp_path / f"o.{suffix}")]) == 0
        assert f"wrote {tmp_path / f'o.{suffix}'}" in capsys.readouterr().out
    assert main(["export", str(store_path), "--format", "gpkg", "--out", str(tmp_path / "o.gpkg")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_a_detection_lands_on_its_map_position(tmp_path):
    """Store (y, x) is a pixel centre of level 0; on the map it is the transform of (x + 0.5, y + 0.5), exactly."""
    a, c, e, f = 0.5, 500000.0, -0.5, 4000000.0
    spec = StoreSpec(shape=(40, 50), num_classes=2, class_names=["bg", "tree"], region_count=1, chunk=64,
                     min_level_size=32, downsample_to_level0=2.0)
    meta = {"model_checksum": "m", "image_fingerprint": "i", "plan_checksum": "p", "model": "t", "image": "/x/o.tif",
            "image_shape": [80, 100, 3], "image_pixel_size": [0.5, 0.5], "image_pixel_unit": "m",
            "image_georef": {"crs": "EPSG:32617", "epsg": 32617, "transform": [a, 0.0, c, 0.0, e, f]},
            "plan": {"windows": [[0]]}}
    store = ResultStore.create(tmp_path / "d.xt.zarr", spec, meta)
    lab = np.zeros((40, 50), np.uint8)
    lab[10:20, 5:15] = 1  # analysis px: level-0 corners x 10..30, y 20..40
    det = {"y": np.array([30.0], np.float32), "x": np.array([60.0], np.float32), "h": np.array([4.0], np.float32),
           "w": np.array([6.0], np.float32), "cls": np.array([0], np.int32), "score": np.array([0.9], np.float32)}
    store.write_region(0, (0, 0, 40, 50), lab, detections=det)
    store.finish({})
    out = export_gpkg(tmp_path / "d.xt.zarr", tmp_path / "d.gpkg", simplify=0, detections_as="points")
    _, _, wkb, _ = pyogrio.raw.read(out, layer="detections")
    assert shapely.get_coordinates(shapely.from_wkb(wkb)).tolist() == [[c + a * 60.5, f + e * 30.5]]
    _, _, wkb, values = pyogrio.raw.read(out, layer="segmentation", columns=["area_m2"])
    (poly,) = shapely.from_wkb(wkb)
    assert poly.bounds == pytest.approx((c + a * 10, f + e * 40, c + a * 30, f + e * 20), abs=0.26)
    assert values[0][0] == pytest.approx(20 * 20 * 0.25, rel=0.01)  # 400 level-0 px of 0.25 m² (corners cut)
    with rasterio.open(export_geotiff(tmp_path / "d.xt.zarr", tmp_path / "d.tif")) as ds:
        assert tuple(ds.transform)[:6] == (2 * a, 0.0, c, 0.0, 2 * e, f)  # an analysis px is 2 level-0 px
        assert ds.read(1)[10:20, 5:15].all() and ds.read(1).sum() == 100


def test_float_nodata_reaches_the_model_as_a_gap_not_a_value(tmp_path):
    from napari_xt.engine.reader import read_region_pixels

    path = write_scene(tmp_path / "n.tif", "EPSG:32631", UTM31, h=100, w=120, nodata=-99.0, border=10)
    with open_image(path) as img:
        plan = make_plan(img, region_size=64, use_mask=False)
        px = read_region_pixels(img, plan, plan.regions[0])
    assert np.isnan(px[:10]).all() and np.isfinite(px[10:64, 10:64]).all()
