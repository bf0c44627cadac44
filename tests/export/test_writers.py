"""npe2 writers: called directly with (path, data, meta) and through napari's own save with plugin="napari-xt"."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import zarr
from exporthelpers import COLORS, NAMES
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from napari_xt._writer import (
    write_labels_ome_zarr,
    write_points_csv,
    write_points_geojson,
)
from napari_xt.export import ExportError

POINTS = np.array([[10.0, 20.0], [30.5, 40.25], [55.0, 5.0]])
POINT_FEATURES = pd.DataFrame({"class": ["nucleus", "mitosis", "nucleus"], "score": [0.9, 0.4, 0.75]})


def _label_node(path):
    return next(iter(Reader(parse_url(str(path)))()))


def test_labels_writer_copies_a_multiscale_store_layer(store, tmp_path):
    meta = {"name": "xT labels", "scale": [0.5, 0.5], "translate": [0.125, 0.125], "units": ("micrometer",) * 2,
            "features": pd.DataFrame({"class": NAMES}),
            "colormap": {i: [c / 255 for c in rgb] + [1.0] for i, rgb in enumerate(COLORS)}}
    written = write_labels_ome_zarr(str(tmp_path / "layer.zarr"), list(store.labels), meta)
    assert written == [str(tmp_path / "layer.zarr")]
    node = _label_node(written[0])
    for level, data in zip(store.labels, node.data, strict=True):
        np.testing.assert_array_equal(np.asarray(data), level[:])
    assert node.metadata["properties"][3] == {"class": "vessel"}
    assert node.metadata["color"][1] == pytest.approx([c / 255 for c in COLORS[1]] + [1.0])
    transforms = node.metadata["coordinateTransformations"]
    assert transforms[2] == [{"type": "scale", "scale": [2.0, 2.0]}, {"type": "translation",
                                                                       "translation": [0.125, 0.125]}]
    assert node.metadata["axes"][0] == {"name": "y", "type": "space", "unit": "micrometer"}


def test_labels_writer_takes_one_plain_array_and_refuses_floats(tmp_path):
    data = np.zeros((3, 40, 50), np.int32)
    data[1, 10:20, 5:45] = 7
    written = write_labels_ome_zarr(str(tmp_path / "vol.zarr"), data, {"name": "vol"})
    arr = zarr.open_array(written[0] + "/0", mode="r")
    np.testing.assert_array_equal(arr[:], data)
    ms = zarr.open_group(written[0], mode="r").attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    with pytest.raises(ExportError, match="must be integers"):
        write_labels_ome_zarr(str(tmp_path / "f.zarr"), np.zeros((4, 4), np.float32), {})
    assert not (tmp_path / "f.zarr").exists()


def test_points_writers_keep_class_and_score(tmp_path):
    meta = {"name": "dets", "features": POINT_FEATURES, "scale": [0.25, 0.25], "translate": [0, 0],
            "units": ("micrometer", "micrometer"), "face_color": np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 0, 1]])}
    with open(write_points_geojson(str(tmp_path / "p.geojson"), POINTS, meta)[0]) as fh:
        geo = json.load(fh)
    assert len(geo["features"]) == 3
    first = geo["features"][1]
    assert first["geometry"]["coordinates"] == pytest.approx([40.75, 31.0])  # x, y + 0.5: QuPath's corner origin
    assert first["properties"]["classification"] == {"name": "mitosis", "color": [0, 255, 0]}
    assert first["properties"]["measurements"] == {"score": pytest.approx(0.4)}
    assert first["properties"]["objectType"] == "detection"

    with open(write_points_csv(str(tmp_path / "p.csv"), POINTS, meta)[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["x", "y", "class", "score", "x_micrometer", "y_micrometer"]
    assert [(float(r["x"]), float(r["y"]), r["class"]) for r in rows] == [
        (20.0, 10.0, "nucleus"), (40.25, 30.5, "mitosis"), (5.0, 55.0, "nucleus")]
    assert float(rows[1]["x_micrometer"]) == pytest.approx(40.25 * 0.25)

    with open(write_points_csv(str(tmp_path / "bare.csv"), POINTS, {})[0], newline="") as fh:
        assert next(csv.reader(fh)) == ["x", "y"]


def test_viewer_saves_through_the_plugin(make_napari_viewer, store, tmp_path):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(list(store.labels), multiscale=True, name="xT labels", features={"class": NAMES})
    points = viewer.add_points(POINTS, features=POINT_FEATURES, name="dets")

    viewer.layers.selection = {labels}
    saved = viewer.layers.save(str(tmp_path / "saved.zarr"), selected=True, plugin="napari-xt")
    assert saved == [str(tmp_path / "saved.zarr")]
    node = _label_node(saved[0])
    np.testing.assert_array_equal(np.asarray(node.data[1]), store.labels[1][:])
    assert node.metadata["properties"][2] == {"class": "stroma"}

    viewer.layers.selection = {points}
    for name in ("saved.geojson", "saved.csv"):
        assert viewer.layers.save(str(tmp_path / name), selected=True, plugin="napari-xt") == [str(tmp_path / name)]
    features = json.loads((tmp_path / "saved.geojson").read_text())["features"]
    assert [f["properties"]["classification"]["name"] for f in features] == ["nucleus", "mitosis", "nucleus"]
    with open(tmp_path / "saved.csv", newline="") as fh:
        assert [r["score"] for r in csv.DictReader(fh)] == ["0.9", "0.4", "0.75"]
