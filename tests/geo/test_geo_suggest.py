"""``napari-xt suggest`` on a georeferenced orthomosaic: the GeoJSON lands on the map (RFC 7946 lon/lat) by default,
keeps each suggestion's pixel box, and that file excludes its regions from the next round."""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pytest
import torch
from geohelpers import ORIGIN, ORTHO_PX, UTM17, write_ortho

from napari_xt.cli import main
from napari_xt.model import XTConfig, build_model, save_model


@pytest.fixture(scope="module")
def ortho_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("geosuggest")
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=128, sub_region_size=64, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2},
                   heads={"segmentation": {"num_classes": 3}})
    model = root / "seg.safetensors"
    save_model(build_model(cfg), model)
    return write_ortho(root / "ortho.tif", h=640, w=512, border=64), model


def _suggest(image, model, out, *extra):
    assert main(["suggest", str(image), "--model", str(model), "--top", "3", "--out", str(out), "--no-mask",
                 *extra]) == 0
    return json.loads(out.read_text())


def test_suggestions_are_lonlat_on_the_map_and_keep_their_pixel_boxes(ortho_and_model, tmp_path):
    image, model = ortho_and_model
    on_map = _suggest(image, model, tmp_path / "map.geojson")
    assert "longitude" in on_map["properties"]["coordinates"]
    to_utm = pyproj.Transformer.from_crs("EPSG:4326", UTM17, always_xy=True)
    for feature in on_map["features"]:
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        assert np.all((ring[:, 0] > -82) & (ring[:, 0] < -80) & (ring[:, 1] > 35) & (ring[:, 1] < 37))
        east, north = to_utm.transform(ring[:, 0], ring[:, 1])
        x0, y0, x1, y1 = feature["properties"]["pixel_box"]
        expected_x = ORIGIN[0] + np.array([x0, x1, x1, x0, x0]) * ORTHO_PX
        expected_y = ORIGIN[1] - np.array([y0, y0, y1, y1, y0]) * ORTHO_PX
        np.testing.assert_allclose(east, expected_x, atol=0.01)  # cm: the same place, through lon/lat and back
        np.testing.assert_allclose(north, expected_y, atol=0.01)
    in_pixels = _suggest(image, model, tmp_path / "px.geojson", "--coords", "pixel")
    assert in_pixels["properties"]["coordinates"].startswith("level-0 pixels")
    for a, b in zip(in_pixels["features"], on_map["features"], strict=True):
        x0, y0, x1, y1 = a["properties"]["pixel_box"]
        assert a["geometry"]["coordinates"][0] == [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        assert a["properties"]["pixel_box"] == b["properties"]["pixel_box"]
    # the map file excludes its regions from the next round (read through the pixel boxes)
    again = _suggest(image, model, tmp_path / "next.geojson", "--exclude", str(tmp_path / "map.geojson"))
    before = {tuple(f["properties"]["pixel_box"]) for f in on_map["features"]}
    assert before.isdisjoint(tuple(f["properties"]["pixel_box"]) for f in again["features"])


def test_map_coordinates_for_an_image_without_a_crs_is_a_clear_error(tissue_ome_tiff, ortho_and_model, tmp_path,
                                                                    capsys):
    _, model = ortho_and_model
    out = tmp_path / "s.geojson"
    assert main(["suggest", str(tissue_ome_tiff), "--model", str(model), "--out", str(out), "--no-mask",
                 "--coords", "map"]) == 1
    assert "georeferenced" in capsys.readouterr().err and not out.exists()
