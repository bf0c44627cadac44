"""A damaged result store is found cheaply when it is opened, named (store, array, fix), and listed by `verify`."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from damagedstore import DAMAGES, LAYOUT, ROOT, chunk_files, copy, damaged_copy, planned_store
from legacystore import make_format_1
from napari_xt.cli import main
from napari_xt.errors import StoreDamaged, StoreError
from napari_xt.store import ResultStore
from napari_xt.store.check import region_cores, repair
from napari_xt.store.verify import verify


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    store = planned_store(tmp_path_factory.mktemp("good") / "good.xt.zarr")
    return store.path


def test_a_good_store_is_sound_and_writes_every_chunk(good):
    report = verify(good, deep=True)
    assert report.ok and report.regions_done == report.regions_total == 9 and not report.notes
    store = ResultStore.open(good)
    assert store.meta["every_chunk_written"] is True
    # the background-only chunk is a file too: a missing file always means lost data
    assert (good / "labels/0/c/4/5").is_file() and not np.asarray(store.labels[0][512:600, 640:700]).any()


@pytest.mark.parametrize("name", [*LAYOUT, *ROOT])
def test_layout_damage_is_named_before_any_read(good, tmp_path, name):
    """Shape, dtype, a missing pyramid or a lost root document: a StoreDamaged at open, in well under a second."""
    store = damaged_copy(good, tmp_path, name)
    t0 = time.perf_counter()
    with pytest.raises(StoreDamaged) as err:
        ResultStore.open(store)
    assert time.perf_counter() - t0 < 1.0  # a 10^9 x 10^9 label array is refused, not read
    part, repairable = DAMAGES[name][1], DAMAGES[name][2]
    assert err.value.path == store and err.value.part == part
    assert str(store) in str(err.value) and part in str(err.value)
    assert err.value.fix == ("resume" if repairable else "remake")
    report = verify(store)
    assert not report.ok and report.damages[0].part == part


def test_a_newer_store_format_is_not_called_damaged(good, tmp_path):
    store = damaged_copy(good, tmp_path, "chunks_deleted")
    doc = json.loads((store / "zarr.json").read_text())
    doc["attributes"]["napari_xt"]["store_format"] = 9
    (store / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="newer napari-xt") as err:
        ResultStore.open(store)
    assert not isinstance(err.value, StoreDamaged)


def test_a_folder_that_is_no_store_is_still_not_a_store(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    (tmp_path / "x.zarr" / "zarr.json").write_text("{}")
    with pytest.raises(StoreError, match="not a napari-xt result store") as err:
        verify(tmp_path / "x.zarr")
    assert not isinstance(err.value, StoreDamaged)


def test_missing_chunks_are_found_by_listing_and_mapped_to_regions(good, tmp_path):
    store = damaged_copy(good, tmp_path, "chunks_deleted")
    report = verify(store)
    assert not report.ok and report.fix == "resume"
    assert sorted(report.by_region()) == list(range(9))
    assert {d.part for d in report.damages} >= {"labels/0", "labels/1", "labels/2"}


def test_one_lower_level_chunk_spoils_every_region_sharing_it(good, tmp_path):
    """Level-1 chunk (1, 1) holds the samples of level-0 rows and columns 256..511, which the cores of regions 4, 5,
    7 and 8 reach into (rows 256-428 / 428-600, columns 256-478 / 478-700)."""
    store = copy(good, tmp_path)
    (store / "labels/1/c/1/1").unlink()
    report = verify(store)
    assert report.by_region() == {4: ["labels/1"], 5: ["labels/1"], 7: ["labels/1"], 8: ["labels/1"]}


def test_garbage_chunks_need_the_deep_check(good, tmp_path):
    store = damaged_copy(good, tmp_path, "chunks_garbage")
    assert verify(store).ok  # a file listing cannot see garbage
    deep = verify(store, deep=True)
    assert not deep.ok and deep.fix == "verify" and sorted(deep.by_region()) == list(range(9))
    assert "labels/0/c/0/0" in deep.damages[0].chunks
    opened = ResultStore.open(store)
    with pytest.raises(StoreDamaged, match=r"labels/0: chunk c/0/0 cannot be decoded") as err:
        opened.labels[0][:10, :10]  # zstd's error, named: store, array, chunk and fix
    assert err.value.fix == "verify" and err.value.path == store


def test_a_complete_store_that_lost_its_done_flags_is_damaged(good, tmp_path):
    store = copy(good, tmp_path)
    (store / "done/c/0").write_bytes(b"not zstd")
    opened = ResultStore.open(store)  # still opens: the regions of that chunk read as not done
    assert opened.n_done == 0 and opened.unreadable == {"done": [(0,)]}
    report = verify(store)
    assert [d.part for d in report.damages] == ["done", "done"] and sorted(report.by_region()) == list(range(9))


def test_a_done_region_whose_detection_rows_are_gone_is_damaged(good, tmp_path):
    store = copy(good, tmp_path)
    for f in chunk_files(store, "detections/table"):
        f.unlink()
    report = verify(store)
    assert [d.part for d in report.damages] == ["detections/table"] and sorted(report.by_region()) == list(range(9))
    assert ResultStore.open(store).detections()["y"].size == 0  # what an unchecked reader would have exported
    (store / "detections/table/c/0/0").write_bytes(b"garbage")
    with pytest.raises(StoreDamaged, match="detections/table"):
        ResultStore.open(store).detections()


def test_repair_clears_the_spoiled_regions_and_records_it(good, tmp_path):
    store_path = copy(good, tmp_path)
    (store_path / "labels/1/c/1/1").write_bytes(b"garbage")
    store = ResultStore.open(store_path, mode="r+")
    assert repair(store, region_cores(store.meta), deep=False) == []  # the listing sees nothing wrong
    assert repair(store, region_cores(store.meta), deep=True) == [4, 5, 7, 8]
    again = ResultStore.open(store_path)
    assert again.done_ids().tolist() == [0, 1, 2, 3, 6] and not again.complete
    assert not (store_path / "labels/1/c/1/1").exists()  # the undecodable file is gone: a rewrite starts clean
    assert again.meta["repairs"][-1]["regions"] == 4 and "labels/1" in again.meta["repairs"][-1]["parts"]


def test_an_older_store_without_every_chunk_is_read_and_only_decoded(good, tmp_path):
    """A store of an earlier release leaves background-only chunks out: not damage, a note; format 1 still reads."""
    store = copy(good, tmp_path)
    doc = json.loads((store / "zarr.json").read_text())
    del doc["attributes"]["napari_xt"]["every_chunk_written"]
    (store / "zarr.json").write_text(json.dumps(doc))
    make_format_1(store)
    (store / "labels/0/c/4/5").unlink()  # background only: an earlier release never wrote it
    report = verify(store, deep=True)
    assert report.ok and "earlier napari-xt" in report.notes[0]
    old = ResultStore.open(store)
    assert old.complete and old.n_done == 9 and np.asarray(old.labels[0][:]).any()


def test_verify_cli_prints_damage_by_region_and_exits_1(good, tmp_path, capsys):
    assert main(["verify", str(good)]) == 0
    assert "sound" in capsys.readouterr().out
    store = damaged_copy(good, tmp_path, "chunks_deleted")
    assert main(["verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "DAMAGED" in out and "region 0: labels/0" in out and "--resume" in out and "/data/slide.svs" in out
    assert main(["verify", str(damaged_copy(good, tmp_path, "chunks_garbage")), "--deep", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["fix"] == "verify" and report["regions_damaged"] == list(range(9)) and report["deep"]
    assert main(["verify", str(damaged_copy(good, tmp_path, "root_empty"))]) == 1
    out = capsys.readouterr().out
    assert "zarr.json" in out and "--overwrite" in out and "Traceback" not in out


def test_verify_help_says_what_it_checks(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--deep" in text and "done has its chunk files" in text and "Exit code 0: sound" in text
