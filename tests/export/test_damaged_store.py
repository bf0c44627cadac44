"""Exports never write a silently incomplete file: a damaged store is refused in seconds, named with its fix, or (with
``partial``) exported as what is intact and marked partial."""

from __future__ import annotations

import csv
import json
import time

import pytest

from damagedstore import DAMAGES, copy, damaged_copy, planned_store
from legacystore import make_format_1
from napari_xt import export
from napari_xt.cli import main
from napari_xt.errors import StoreDamaged


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return planned_store(tmp_path_factory.mktemp("good") / "good.xt.zarr").path


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_every_damage_is_refused_naming_the_store(good, tmp_path, name):
    store = damaged_copy(good, tmp_path, name)
    out = tmp_path / "out.geojson"
    t0 = time.perf_counter()
    with pytest.raises(StoreDamaged) as err:
        export.export_geojson(store, out)
    assert time.perf_counter() - t0 < 5  # the 10^9 x 10^9 label array is refused, never traced
    assert err.value.path == store and str(store) in str(err.value)
    assert err.value.part.startswith(DAMAGES[name][1])
    assert not out.exists() and not list(tmp_path.glob(".out*"))  # nothing half-written is left


@pytest.mark.parametrize("name", sorted(DAMAGES))
def test_cli_export_of_a_damaged_store_is_one_line(good, tmp_path, capsys, name):
    store = damaged_copy(good, tmp_path, name)
    code = main(["export", str(store), "--format", "geojson", "--out", str(tmp_path / "o.geojson")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err
    assert str(store) in err and "damaged" in err
    assert "Zstd" not in err.split("(")[0] and "reshape" not in err  # the library's words come after the names
    fix = {"chunks_garbage": "--resume --verify", "root_empty": "--overwrite", "root_unreadable": "--overwrite",
           "root_wrong_type": "--overwrite"}.get(name, "--resume")
    assert fix in err
    if name == "chunks_deleted":
        assert "--partial" in err


def test_missing_chunks_with_partial_export_what_is_intact_and_say_so(good, tmp_path, capsys):
    store = copy(good, tmp_path)
    (store / "labels/0/c/0/0").unlink()
    out = tmp_path / "p.geojson"
    code = main(["export", str(store), "--format", "geojson", "--out", str(out), "--partial"])
    assert code == 0
    assert "damaged" in capsys.readouterr().err  # a warning line, and the file says partial
    doc = json.loads(out.read_text())
    assert doc["napari_xt"]["partial"] is True and doc["features"]
    whole = tmp_path / "w.geojson"
    export.export_geojson(good, whole)
    assert len(json.loads(whole.read_text())["features"]) > len(doc["features"])


@pytest.mark.parametrize("fmt", ["ome-zarr", "areas", "csv"])
def test_other_formats_refuse_missing_chunks_too(good, tmp_path, capsys, fmt):
    store = damaged_copy(good, tmp_path, "chunks_deleted")
    code = main(["export", str(store), "--format", fmt, "--out", str(tmp_path / f"o.{fmt}")])
    assert code == 1 and "labels/0" in capsys.readouterr().err


def test_sound_stores_export_as_before_old_formats_included(good, tmp_path):
    out = export.export_geojson(good, tmp_path / "a.geojson")
    assert json.loads(out.read_text())["napari_xt"]["partial"] is False
    old = copy(good, tmp_path, "old")
    make_format_1(old)
    with export.export_class_areas_csv(old, tmp_path / "areas.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sum(int(r["pixels"]) for r in rows) == 600 * 700 and int(rows[1]["pixels"]) > 0
