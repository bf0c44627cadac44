"""`predict --resume` repairs a damaged store: the regions that lost data are redone, and the store ends equal to a
fresh run (labels bitwise, detections equal); damage it cannot repair is one sentence naming the store and the fix."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from damagedstore import DAMAGES, LAYOUT, ROOT, chunk_files
from napari_xt.app import driver
from napari_xt.app.request import make_request
from napari_xt.cli import main
from napari_xt.errors import StoreDamaged
from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.store import ResultStore

OPTIONS = dict(level=0, region_size=256, window_size=2, batch_size=2, use_mask=False, device="cpu",
               score_threshold=0.0, max_detections_per_region=5)
FLAGS = ["--level", "0", "--region-size", "256", "--window-size", "2", "--batch-size", "2", "--no-mask", "--device",
         "cpu", "--score-threshold", "0", "--max-detections", "5"]


@pytest.fixture(scope="module")
def run_inputs(tmp_path_factory):
    """A segmentation + detection model and a 768 x 1024 slide: 12 regions of 256 px in windows of 2 x 2."""
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    folder = tmp_path_factory.mktemp("repair")
    torch.manual_seed(3)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2},
                   heads={"segmentation": {"num_classes": 3}, "detection": {"num_classes": 2}}, pixel_size=None)
    model = save_model(build_model(cfg), folder / "seg_det.safetensors")
    image = write_ome_tiff(TissueSample(768, 1024, seed=5), folder / "slide.ome.tif")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order for the fresh run and every repair
    fresh = folder / "fresh.xt.zarr"
    driver.predict(make_request(image, model, fresh, **OPTIONS))
    yield image, model, fresh
    torch.set_num_threads(threads)


def _resume(run_inputs, store, verify=False):
    image, model, _ = run_inputs
    return driver.predict(make_request(image, model, store, resume=True, verify=verify, **OPTIONS))


def _assert_equal_to_fresh(store_path, fresh_path):
    store, fresh = ResultStore.open(store_path), ResultStore.open(fresh_path)
    assert store.complete and store.n_done == fresh.n_done == 12
    assert len(store.labels) == len(fresh.labels)
    for a, b in zip(store.labels, fresh.labels, strict=True):
        np.testing.assert_array_equal(np.asarray(a[:]), np.asarray(b[:]))  # bitwise, every pyramid level
    got, want = store.detections(), fresh.detections()
    assert len(want["y"]) > 0
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert not store.damage(deep=True)


def _damage_table(store):
    for f in chunk_files(store, "detections/table"):
        f.unlink()


def _damage_one_level_0_chunk(store):
    (store / "labels/0/c/0/0").unlink()  # 512 px chunks: the cores of regions 0, 1, 4 and 5


def _damage_done_of_complete_store(store):
    (store / "done/c/0").write_bytes(b"garbage")


CASES = {
    **{name: (DAMAGES[name][0], False, 12) for name in ("chunks_deleted", *LAYOUT)},
    "chunks_garbage": (DAMAGES["chunks_garbage"][0], True, 12),  # found by decoding: --verify
    "one_level_0_chunk": (_damage_one_level_0_chunk, False, 4),  # the 4 regions of the first window
    "detection_rows_deleted": (_damage_table, False, None),  # the regions that had detections
    "done_flags_garbage": (_damage_done_of_complete_store, False, 12),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_resume_repairs_to_what_a_fresh_run_writes(run_inputs, tmp_path, name):
    damage, verify, repaired = CASES[name]
    store = tmp_path / "s.xt.zarr"
    shutil.copytree(run_inputs[2], store)
    damage(store)
    if repaired is None:
        repaired = int(np.count_nonzero(ResultStore.open(run_inputs[2]).attempts() > 0))
        assert 0 < repaired <= 12
    summary = _resume(run_inputs, store, verify=verify)
    assert summary.regions_repaired == repaired and summary.regions_new == repaired
    _assert_equal_to_fresh(store, run_inputs[2])
    assert ResultStore.open(store).meta["repairs"][-1]["regions"] == repaired


def test_plain_resume_leaves_garbage_to_verify_and_says_so(run_inputs, tmp_path):
    """The cheap check is a file listing: garbage chunks are only found by decoding (``--verify``)."""
    store = tmp_path / "g.xt.zarr"
    shutil.copytree(run_inputs[2], store)
    DAMAGES["chunks_garbage"][0](store)
    assert _resume(run_inputs, store).regions_repaired == 0
    with pytest.raises(StoreDamaged, match="--verify|deep check"):
        np.asarray(ResultStore.open(store).labels[0][:])


@pytest.mark.parametrize("name", ROOT)
def test_a_store_whose_metadata_is_lost_is_named_and_can_be_made_again(run_inputs, tmp_path, capsys, name):
    image, model, fresh = run_inputs
    store = tmp_path / "lost.xt.zarr"
    shutil.copytree(fresh, store)
    DAMAGES[name][0](store)
    args = ["predict", str(image), "--model", str(model), "--out", str(store), *FLAGS, "--json"]
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert str(store) in err and "zarr.json" in err and "--overwrite" in err and "\n" not in err
    assert "Traceback" not in err
    assert main([*args, "--overwrite"]) == 0  # a damaged store (laid out as one) may be replaced
    capsys.readouterr()
    _assert_equal_to_fresh(store, fresh)


def test_cli_resume_reports_regions_repaired(run_inputs, tmp_path, capsys):
    image, model, fresh = run_inputs
    store = tmp_path / "c.xt.zarr"
    shutil.copytree(fresh, store)
    DAMAGES["chunks_deleted"][0](store)
    args = ["predict", str(image), "--model", str(model), "--out", str(store), *FLAGS]
    assert main([*args, "--resume", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["regions_repaired"] == 12 and summary["regions_done"] == 12
    assert main([*args, "--verify"]) == 1  # --verify checks the store a run resumes
    assert "--resume" in capsys.readouterr().err


def test_batch_resumes_a_damaged_finished_store_instead_of_skipping_it(run_inputs, tmp_path):
    from napari_xt.app._batch_task import process_image

    image, model, fresh = run_inputs
    store = tmp_path / "b.xt.zarr"
    shutil.copytree(fresh, store)
    record = process_image(str(image), str(store), make_request(image, model, "", **OPTIONS))
    assert record["status"] == "skipped"  # sound and finished
    DAMAGES["chunks_deleted"][0](store)
    record = process_image(str(image), str(store), make_request(image, model, "", **OPTIONS))
    assert record["status"] == "resumed" and record["regions_done"] == 12
    _assert_equal_to_fresh(store, fresh)
