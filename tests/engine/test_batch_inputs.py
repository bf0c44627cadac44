"""The pure parts of a batch: input expansion, store names, GPU assignment, worker counts, the manifest files."""

import json
import os

import pytest

from napari_xt.app._inputs import expand_inputs, image_stem, store_paths
from napari_xt.app._manifest import (
    COLUMNS,
    make_record,
    read_manifest,
    write_manifest,
)
from napari_xt.app.batch import default_workers, worker_device


@pytest.fixture
def files(tmp_path):
    for rel in ("a/one.ome.tif", "a/two.svs", "b/one.ome.tif", "b/three.tiff"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"II*\x00")
    return tmp_path


def _paths(items):
    return [os.path.relpath(i.path, os.path.dirname(i.path) + "/..") for i in items]


def test_glob_is_expanded_sorted_and_duplicates_dropped(files):
    items = expand_inputs([str(files / "a" / "*"), str(files / "a" / "two.svs"), str(files / "b" / "*.tif*")])
    assert [i.error for i in items] == [None] * 4
    assert _paths(items) == ["a/one.ome.tif", "a/two.svs", "b/one.ome.tif", "b/three.tiff"]


def test_list_file_with_comments_blank_lines_and_relative_paths(files, tmp_path):
    listing = files / "b" / "slides.txt"
    listing.write_text("# slides of study 7\n\n  ../a/one.ome.tif  \nthree.tiff\n# ../a/two.svs\n"
                       f"{files / 'a' / 'two.svs'}\nnot-there.svs\n../a/*.nothing\n", encoding="utf-8")
    for arg in (f"@{listing}", str(listing)):  # '@list' and a bare .txt argument mean the same
        items = expand_inputs([arg])
        assert _paths(items) == ["a/one.ome.tif", "b/three.tiff", "a/two.svs", "b/not-there.svs", "a/*.nothing"]
        errors = [i.error for i in items]
        assert errors[:3] == [None] * 3
        assert "does not exist" in errors[3] and "no file matches" in errors[4]


def test_missing_inputs_are_items_not_exceptions(tmp_path):
    items = expand_inputs([str(tmp_path / "gone.svs"), f"@{tmp_path / 'no-list.txt'}", str(tmp_path / "*.svs")])
    assert len(items) == 3
    assert "does not exist" in items[0].error
    assert "list file" in items[1].error and "cannot be read" in items[1].error
    assert "no file matches" in items[2].error


def test_a_literal_name_with_glob_characters_is_taken_as_is(tmp_path):
    odd = tmp_path / "scan[1].svs"
    odd.write_bytes(b"II*\x00")
    items = expand_inputs([str(odd)])
    assert [(i.path, i.error) for i in items] == [(str(odd), None)]


@pytest.mark.parametrize("name, stem", [("s/slide.ome.tif", "slide"), ("s/x.OME.TIFF", "x"), ("scan.svs", "scan"),
                                        ("c/img.ome.zarr/", "img"), ("dicom_folder", "dicom_folder"),
                                        ("v1.2.ndpi", "v1.2")])
def test_image_stem(name, stem):
    assert image_stem(name) == stem


def test_store_names_with_colliding_stems_get_a_stable_hash(files, tmp_path):
    a, b, two = str(files / "a/one.ome.tif"), str(files / "b/one.ome.tif"), str(files / "a/two.svs")
    upper = str(files / "b/TWO.tif")
    names = store_paths([a, b, two, upper], tmp_path / "out")
    assert names[a] != names[b]
    assert names[a].name.startswith("one-") and names[a].name.endswith(".xt.zarr")
    assert names[two].name.startswith("two-") and names[upper].name.startswith("TWO-")  # case-insensitive clash
    assert store_paths([b, a, upper, two], tmp_path / "out") == names  # order does not matter
    alone = store_paths([a], tmp_path / "out")
    assert alone[a] == tmp_path / "out" / "one.xt.zarr"


def test_gpu_assignment_per_local_worker():
    assert [worker_device("cuda", name, 4) for name in (0, 1, "3")] == ["cuda:0", "cuda:1", "cuda:3"]
    assert worker_device("auto", 5, 4) == "cuda:1"  # more workers than GPUs share them round-robin
    assert worker_device("cuda:2", 0, 4) == "cuda:2"  # an explicit device wins
    assert worker_device("cpu", 1, 4) == "cpu"
    assert worker_device("cuda", 1, 0) == "cuda"  # a cluster we did not start: the worker's own GPU
    assert worker_device("cuda", "tcp://10.0.0.5:4100", 2) == "cuda"  # not a LocalCluster index
    assert worker_device("auto", 0, 0) == "auto"


def test_default_worker_count():
    assert default_workers("auto", 4, 64) == 4
    assert default_workers("cuda", 2, 8) == 2
    assert default_workers("cpu", 4, 64) == 2  # GPUs are ignored for a CPU run
    assert default_workers("auto", 0, 2) == 1
    assert default_workers("auto", 0, 1) == 1
    assert default_workers("auto", 0, None) == 1


def test_manifest_is_written_atomically_in_both_formats(tmp_path):
    records = [make_record("/x/a.svs", "/o/a.xt.zarr", "done", regions_total=4, regions_done=4, seconds=1.5),
               {**make_record("/x/b.svs", "/o/b.xt.zarr", "failed", error="bad\nfile   here"), "pid": 7}]
    path = write_manifest(tmp_path, records)
    assert path == tmp_path / "manifest.json"
    rows = read_manifest(tmp_path)
    assert [r["status"] for r in rows] == ["done", "failed"]
    assert rows[1]["error"] == "bad file here" and "pid" not in rows[1]
    assert list(rows[0]) == list(COLUMNS)
    csv_lines = (tmp_path / "manifest.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == list(COLUMNS) and len(csv_lines) == 3
    assert sorted(os.listdir(tmp_path)) == ["manifest.csv", "manifest.json"]  # no temporary files left
    write_manifest(tmp_path, records[:1])
    assert len(json.loads(path.read_text())) == 1


def test_records_reject_unknown_statuses_and_columns():
    with pytest.raises(ValueError, match="status"):
        make_record("a", "b", "finished")
    with pytest.raises(ValueError, match="columns"):
        make_record("a", "b", "done", colour="red")
