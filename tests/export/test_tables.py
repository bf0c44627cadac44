"""CSV and JSON exports against the store, and the refusals every exporter shares."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from exporthelpers import (
    DOWNSAMPLE,
    NAMES,
    PIXEL_UM,
    ResultStore,
    StoreSpec,
    build_store,
)

from napari_xt.export import (
    ExportError,
    export_class_areas_csv,
    export_detections_csv,
    export_geojson,
    export_ome_zarr_labels,
    export_scores_json,
)

EXPORTS = {
    "geojson": (export_geojson, "out.geojson"),
    "ome-zarr": (export_ome_zarr_labels, "out.ome.zarr"),
    "csv": (export_detections_csv, "out.csv"),
    "areas": (export_class_areas_csv, "areas.csv"),
    "json": (export_scores_json, "scores.json"),
}


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_detections_csv_matches_the_store(store, tmp_path):
    rows = _rows(export_detections_csv(store, tmp_path / "det.csv"))
    det = store.detections()
    assert len(rows) == len(det["y"]) == 12
    assert list(rows[0]) == ["x", "y", "width", "height", "class_id", "class_name", "score", "region_id",
                             "x_um", "y_um", "width_um", "height_um"]
    for i, row in enumerate(rows):
        assert float(row["x"]) == pytest.approx(float(det["x"][i]), abs=1e-3)
        assert float(row["y"]) == pytest.approx(float(det["y"][i]), abs=1e-3)
        assert float(row["width"]) == pytest.approx(float(det["w"][i]))
        assert float(row["height"]) == pytest.approx(float(det["h"][i]))
        assert int(row["class_id"]) == det["cls"][i] and row["class_name"] == ["nucleus", "mitosis"][det["cls"][i]]
        assert float(row["score"]) == pytest.approx(float(det["score"][i]), abs=1e-6)
        assert int(row["region_id"]) == det["region_id"][i]
        assert float(row["x_um"]) == pytest.approx(float(det["x"][i]) * PIXEL_UM, abs=1e-5)
        assert float(row["height_um"]) == pytest.approx(float(det["h"][i]) * PIXEL_UM, abs=1e-5)


def test_class_areas_equal_a_bincount_of_the_label_map(store, labels, tmp_path):
    rows = _rows(export_class_areas_csv(store, tmp_path / "areas.csv"))
    counts = np.bincount(labels.ravel(), minlength=4)
    assert [r["class_name"] for r in rows] == NAMES
    assert [int(r["pixels"]) for r in rows] == counts.tolist()
    for row, n in zip(rows, counts.tolist(), strict=True):
        assert float(row["area_px2"]) == pytest.approx(n * DOWNSAMPLE**2, rel=1e-5)
        assert float(row["area_um2"]) == pytest.approx(n * DOWNSAMPLE**2 * PIXEL_UM**2, rel=1e-5)
        assert float(row["fraction"]) == pytest.approx(n / labels.size, abs=1e-6)


def test_scores_json_names_classes_and_windows(store, tmp_path):
    doc = json.loads(export_scores_json(store, tmp_path / "scores.json").read_text())
    assert doc["partial"] is False and doc["class_names"] == ["benign", "malignant"]
    assert doc["image"]["top_class"] == "malignant"
    assert doc["image"]["scores"]["benign"] == pytest.approx(0.4)
    assert [w["window"] for w in doc["windows"]] == [0, 1]
    assert doc["windows"][1]["top_class"] == "benign" and doc["windows"][1]["regions"] == [2, 3]
    assert doc["napari_xt"]["regions_done"] == 4


def test_no_classification_head_is_a_clear_refusal(tmp_path):
    store = build_store(tmp_path / "seg.zarr", scores=False)
    out = tmp_path / "scores.json"
    with pytest.raises(ExportError, match=r"seg\.zarr has no classification scores"):
        export_scores_json(store, out)
    assert not out.exists()


@pytest.mark.parametrize("fmt", list(EXPORTS))
def test_existing_output_is_kept_unless_overwrite(store, tmp_path, fmt):
    func, name = EXPORTS[fmt]
    out = tmp_path / name
    if fmt == "ome-zarr":
        zarr.open_group(str(out), mode="w", zarr_format=3).attrs["mine"] = "precious"
    else:
        out.write_text("precious")
    with pytest.raises(ExportError, match=f"{name} already exists"):
        func(store, out)
    kept = json.loads((out / "zarr.json").read_text())["attributes"] if fmt == "ome-zarr" else out.read_text()
    assert kept == {"mine": "precious"} or kept == "precious"
    assert func(store, out, overwrite=True) == out
    assert "precious" not in ((out / "zarr.json").read_text() if fmt == "ome-zarr" else out.read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary or replaced copies left


def test_a_folder_or_the_store_itself_is_never_replaced(store, tmp_path):
    folder = tmp_path / "thesis.geojson"
    folder.mkdir()
    (folder / "chapter1.txt").write_text("precious")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_geojson(store, folder, overwrite=True)
    assert (folder / "chapter1.txt").read_text() == "precious"
    with pytest.raises(ExportError, match="is a napari-xt result store"):
        export_ome_zarr_labels(store, store.path, overwrite=True)
    assert ResultStore.open(store.path).complete


@pytest.mark.parametrize("fmt", list(EXPORTS))
def test_unfinished_runs_need_partial_and_say_so(partial_store, tmp_path, fmt):
    func, name = EXPORTS[fmt]
    out = tmp_path / name
    with pytest.raises(ExportError, match=r"not finished \(1 of 4 regions done\).*partial=True"):
        func(partial_store, out)
    assert not out.exists() and not list(tmp_path.iterdir())
    if fmt in ("csv", "areas"):
        with pytest.warns(UserWarning, match="unfinished run"):
            func(partial_store, out, partial=True)
        assert len(_rows(out)) > 0
    else:
        func(partial_store, out, partial=True)
        if fmt == "ome-zarr":
            assert json.loads((out / "zarr.json").read_text())["attributes"]["napari_xt"]["partial"] is True
        else:
            doc = json.loads(out.read_text())
            assert (doc["napari_xt"]["partial"], doc["napari_xt"]["regions_done"]) == (True, 1)


def test_a_failure_mid_export_leaves_nothing_that_looks_complete(tmp_path):
    store = build_store(tmp_path / "broken.zarr")
    chunk = next(p for p in Path(store.path, "labels", "0", "c").rglob("*") if p.is_file())
    chunk.write_bytes(b"not a zstd chunk")  # the export fails when it reaches this chunk
    for func, name in (EXPORTS["geojson"], EXPORTS["ome-zarr"], EXPORTS["areas"]):
        with pytest.raises(Exception) as info:
            func(store, tmp_path / name)
        assert not isinstance(info.value, AssertionError)
        assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.zarr"]


def test_detections_csv_of_a_store_without_detections_has_a_header_only(tmp_path):
    spec = StoreSpec(shape=(64, 64), num_classes=2, region_count=1)
    store = ResultStore.create(tmp_path / "s.zarr", spec, {})
    store.write_region(0, (0, 0, 64, 64), np.zeros((64, 64), np.uint8))
    store.finish({})
    rows = _rows(export_detections_csv(store, tmp_path / "d.csv"))
    assert rows == [] and (tmp_path / "d.csv").read_text().startswith("x,y,width,height,class_id")


def test_metre_pixels_give_metre_columns(tmp_path):
    """A SAR store (10 m pixels): the physical columns and NGFF units follow the store's unit."""
    from exporthelpers import META

    store = build_store(tmp_path / "sar.zarr", meta={**META, "image_pixel_size": 10.0, "image_pixel_unit": "m"})
    det = _rows(export_detections_csv(store, tmp_path / "d.csv"))
    assert float(det[0]["x_m"]) == pytest.approx(float(det[0]["x"]) * 10.0, rel=1e-5)
    areas = _rows(export_class_areas_csv(store, tmp_path / "a.csv"))
    assert float(areas[1]["area_m2"]) == pytest.approx(int(areas[1]["pixels"]) * DOWNSAMPLE**2 * 100.0, rel=1e-5)
    ms = zarr.open_group(str(export_ome_zarr_labels(store, tmp_path / "l.ome.zarr")), mode="r").attrs["ome"]
    assert ms["multiscales"][0]["axes"][1] == {"name": "x", "type": "space", "unit": "meter"}
    assert ms["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [20.0, 20.0]
