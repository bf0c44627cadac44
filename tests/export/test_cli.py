"""``napari-xt export``: exit codes, one-line errors, what it prints and writes."""

import json

import numpy as np
import pytest
import zarr

from napari_xt.cli import main


@pytest.mark.parametrize(("fmt", "name", "says"), [
    ("geojson", "o.geojson", "(7 annotations, 12 detections)"),
    ("ome-zarr", "o.ome.zarr", "(4 levels, 4 classes)"),
    ("csv", "o.csv", "(12 detections)"),
    ("areas", "o.csv", "(4 classes, 420000 pixels)"),
    ("json", "o.json", "(2 windows)"),
])
def test_each_format_writes_and_reports_counts(store, tmp_path, capsys, fmt, name, says):
    out = tmp_path / name
    assert main(["export", str(store.path), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"wrote {out} {says}"
    assert out.exists()


def test_geojson_options_reach_the_exporter(store, tmp_path, capsys):
    out = tmp_path / "boxes.geojson"
    args = ["export", str(store.path), "--format", "geojson", "--out", str(out), "--level", "1", "--simplify", "0",
            "--detections-as", "boxes", "--no-segmentation"]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert {f["geometry"]["type"] for f in doc["features"]} == {"Polygon"}
    assert {f["properties"]["objectType"] for f in doc["features"]} == {"detection"}
    assert doc["napari_xt"]["traced_level"] == 1 and doc["napari_xt"]["simplify_px"] == 0


def test_into_writes_labels_into_an_image(store, tmp_path, capsys):
    image = tmp_path / "slide.ome.zarr"
    group = zarr.open_group(str(image), mode="w", zarr_format=3)
    group.create_array("0", shape=(1200, 1400), chunks=(512, 512), dtype=np.uint8)
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{"axes": [{"name": "y", "type": "space"},
                          {"name": "x", "type": "space"}], "datasets": [{"path": "0", "coordinateTransformations": [
                              {"type": "scale", "scale": [1.0, 1.0]}]}]}]}
    assert main(["export", str(store.path), "--format", "ome-zarr", "--into", str(image), "--name", "cells"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {image / 'labels' / 'cells'} (1 levels, 4 classes)"
    np.testing.assert_array_equal(zarr.open_array(str(image / "labels" / "cells" / "0"), mode="r")[:],
                                  store.labels[0][:])


def _fails(args, capsys, *needles):
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-xt export: error:") and "\n" not in err and "Traceback" not in err
    for needle in needles:
        assert needle in err


def test_errors_are_one_line_and_exit_1(store, partial_store, tmp_path, capsys):
    existing = tmp_path / "taken.csv"
    existing.write_text("precious")
    _fails(["export", str(store.path), "--format", "csv", "--out", str(existing)], capsys, "already exists")
    assert existing.read_text() == "precious"
    out = tmp_path / "p.geojson"
    _fails(["export", str(partial_store.path), "--format", "geojson", "--out", str(out)], capsys,
           "not finished (1 of 4 regions done)", "--partial")
    assert not out.exists()
    _fails(["export", str(store.path), "--format", "csv"], capsys, "needs --out")
    _fails(["export", str(store.path), "--format", "csv", "--out", str(out), "--into", str(tmp_path)], capsys,
           "--into only applies")
    _fails(["export", str(tmp_path / "nope.zarr"), "--format", "csv", "--out", str(out)], capsys, "nope.zarr")
    with pytest.raises(SystemExit) as exc:
        main(["export", str(store.path), "--format", "shapefile", "--out", str(out)])
    assert exc.value.code == 2


def test_partial_csv_warns_in_one_line(partial_store, tmp_path, capsys):
    out = tmp_path / "partial.csv"
    assert main(["export", str(partial_store.path), "--format", "csv", "--out", str(out), "--partial"]) == 0
    captured = capsys.readouterr()
    assert "(3 detections)" in captured.out
    assert captured.err.strip().startswith("napari-xt export: warning:") and "1 of 4 regions" in captured.err


def test_help_lists_formats(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for word in ("ome-zarr", "geojson", "csv", "areas", "json", "--into", "--simplify", "--detections-as"):
        assert word in text
