"""Batch prediction on a real dask LocalCluster (2 worker processes, 1 thread each) over real OME-TIFF files.

One cluster and one first batch run serve the whole module; the re-run test changes the output folder, so it comes
after the tests that read the first run's stores (pytest keeps file order).
"""

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_xt.app._inputs import InputItem, expand_inputs
from napari_xt.app._manifest import COLUMNS, read_manifest
from napari_xt.app.batch import process_image, run_batch
from napari_xt.app.driver import predict, prepare
from napari_xt.app.request import PredictRequest, make_request
from napari_xt.cli._errors import describe as cli_describe
from napari_xt.store import ResultStore, read_meta

N_GOOD = 4
OPTIONS = {"device": "cpu", "batch_size": 2}


def cli_words(err: BaseException) -> str:
    return cli_describe(err, out_flag="--out-dir")


def template(model) -> PredictRequest:
    """The batch's request: every image shares it (a worker sets its image and store)."""
    return make_request("", str(model), "", **OPTIONS)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    folder = tmp_path_factory.mktemp("batch_images")
    good = [write_ome_tiff(TissueSample(512, 768, seed=i), folder / f"slide{i}.ome.tif") for i in range(N_GOOD)]
    corrupt = folder / "corrupt.ome.tif"
    corrupt.write_bytes(good[0].read_bytes()[:200] + bytes(range(256)) * 64)  # a TIFF header, then garbage
    small = write_ome_tiff(TissueSample(256, 512, seed=9), folder / "small.ome.tif")  # two regions, for quick checks
    return {"good": good, "corrupt": corrupt, "missing": folder / "missing.ome.tif", "small": small}


@pytest.fixture(scope="module")
def cluster_address():
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.CRITICAL)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def batch_items(images):
    return expand_inputs([*map(str, images["good"]), str(images["corrupt"]), str(images["missing"])])


@pytest.fixture(scope="module")
def first_run(batch_items, model_path, cluster_address, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_out")
    result = run_batch(batch_items, out, template(model_path), scheduler=cluster_address)
    return result, out, read_manifest(out), (out / "manifest.csv").read_text()


@pytest.fixture(scope="module")
def reference_labels(model_path, tmp_path_factory):
    """Labels of a plain single-process ``predict()`` of an image, computed once per image.

    With one torch thread, as on the workers (dask starts them with OMP_NUM_THREADS=1): another thread count sums
    in another order, which may flip the argmax of a near-tie pixel (measured: 1 pixel in 4.2 million).
    """
    import torch

    cache = {}

    def labels(image):
        if image not in cache:
            out = tmp_path_factory.mktemp("reference") / "ref.zarr"
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                predict(make_request(str(image), str(model_path), str(out), **OPTIONS))
            finally:
                torch.set_num_threads(threads)
            cache[image] = [lvl[:] for lvl in ResultStore.open(out).labels]
        return cache[image]

    return labels


def _meta_state(store) -> tuple[bytes, int]:
    meta = Path(store) / "zarr.json"
    return meta.read_bytes(), meta.stat().st_mtime_ns


def _by_image(records):
    return {r["image"]: r for r in records}


def test_good_images_match_a_single_process_run(first_run, images, reference_labels):
    result, out, _, _ = first_run
    records = _by_image(result.records)
    for image in images["good"][:2]:
        record = records[str(image)]
        assert record["status"] == "done" and record["regions_done"] == record["regions_total"] > 0
        store = ResultStore.open(record["store"])
        assert store.complete and store.path == out / f"{image.name.split('.')[0]}.xt.zarr"
        for ours, ref in zip(store.labels, reference_labels(image), strict=True):
            np.testing.assert_array_equal(ours[:], ref)


def test_bad_inputs_are_recorded_and_do_not_stop_the_batch(first_run, images):
    result, out, manifest, csv_text = first_run
    assert not result.ok
    assert result.counts == {"done": N_GOOD, "skipped": 0, "resumed": 0, "failed": 2, "cancelled": 0}
    records = _by_image(manifest)
    missing, corrupt = records[str(images["missing"])], records[str(images["corrupt"])]
    assert missing["status"] == "failed" and "does not exist" in missing["error"]
    assert corrupt["status"] == "failed" and "corrupt.ome.tif" in corrupt["error"]
    assert "\n" not in corrupt["error"]
    assert not (out / "corrupt.xt.zarr").exists() and not (out / "missing.xt.zarr").exists()
    # the manifest lists the images in input order, with every column, in both formats
    assert [r["image"] for r in manifest] == [str(p) for p in [*images["good"], images["corrupt"],
                                                                  images["missing"]]]
    assert all(set(r) == set(COLUMNS) for r in manifest)
    assert csv_text.splitlines()[0] == ",".join(COLUMNS) and len(csv_text.splitlines()) == len(manifest) + 1
    done = [r for r in manifest if r["status"] == "done"]
    assert all(r["worker"] in ("0", "1") and r["seconds"] > 0 and r["regions_per_s"] > 0 for r in done)
    assert all(r["started"] <= r["finished"] for r in done)


def test_model_is_loaded_once_per_worker_process(first_run):
    result = first_run[0]
    submitted = [r for r in result.records if "pid" in r]
    assert len(submitted) == N_GOOD + 1  # the missing path never reaches a worker
    assert len({r["pid"] for r in submitted}) == 2, "both workers should have taken images"
    assert {r["model_loads"] for r in submitted} == {1}


def test_rerun_skips_finished_and_resumes_partial(first_run, batch_items, images, model_path, cluster_address,
                                                  reference_labels):
    result, out, _, _ = first_run
    records = _by_image(result.records)
    finished = [images["good"][i] for i in range(N_GOOD - 1)]
    before = {}
    for image in finished:
        before[image] = _meta_state(records[str(image)]["store"])
    # the last image: a partial store, as an interrupted run leaves it
    last = images["good"][-1]
    store_path = records[str(last)]["store"]
    shutil.rmtree(store_path)
    run = prepare(make_request(str(last), str(model_path), store_path, **OPTIONS)).run
    stream = iter(run)
    next(stream)
    stream.close()
    partial = ResultStore.open(store_path)
    assert 0 < partial.n_done < partial.spec.region_count and not partial.complete

    again = run_batch(batch_items, out, template(model_path), scheduler=cluster_address)
    statuses = {r["image"]: r["status"] for r in again.records}
    assert [statuses[str(i)] for i in finished] == ["skipped"] * len(finished)
    assert statuses[str(last)] == "resumed"
    skipped = [r for r in again.records if r["status"] == "skipped"]
    assert all(r["regions_done"] == r["regions_total"] > 0 and r["regions_per_s"] == 0 for r in skipped)
    assert statuses[str(images["corrupt"])] == statuses[str(images["missing"])] == "failed"
    for image in finished:
        assert _meta_state(records[str(image)]["store"]) == before[image]
    resumed = ResultStore.open(store_path)
    assert resumed.complete and resumed.n_done == resumed.spec.region_count
    for ours, ref in zip(resumed.labels, reference_labels(last), strict=True):
        np.testing.assert_array_equal(ours[:], ref)
    assert [r["status"] for r in read_manifest(out)] == [r["status"] for r in again.records]


def test_interrupt_records_unfinished_images_as_cancelled(images, model_path, cluster_address, tmp_path):
    items = [InputItem(str(p)) for p in images["good"][:2]]

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(items, tmp_path, template(model_path), scheduler=cluster_address, on_record=interrupt)
    statuses = sorted(r["status"] for r in read_manifest(tmp_path))
    assert statuses == ["cancelled", "done"]
    cancelled = next(r for r in read_manifest(tmp_path) if r["status"] == "cancelled")
    assert "interrupted" in cancelled["error"]


def test_store_of_another_model_fails_unless_overwrite(images, model_path, tmp_path):
    """Worker logic run in this process: same code path as on a worker, without the cluster's start-up."""
    image, store = str(images["small"]), str(tmp_path / "one.xt.zarr")
    assert process_image(image, store, template(model_path))["status"] == "done"
    checksum = read_meta(tmp_path / "one.xt.zarr")["model_checksum"]

    replanned = process_image(image, store, template(model_path).with_plan(region_size=128))
    assert replanned["status"] == "failed" and "another region plan" in replanned["error"]
    assert "another model" not in replanned["error"]

    other = template(model_path).with_(model="tiny-none-seg")
    refused = process_image(image, store, other)
    assert refused["status"] == "failed"
    assert "made with another model" in refused["error"] and "--overwrite" not in refused["error"]  # neutral words
    worded = process_image(image, store, other, describe=cli_words)  # the CLI's words add the flag advice
    assert "made with another model" in worded["error"] and "--overwrite" in worded["error"]
    assert read_meta(tmp_path / "one.xt.zarr")["model_checksum"] == checksum

    replaced = process_image(image, store, other, overwrite=True)
    assert replaced["status"] == "done" and replaced["regions_done"] == replaced["regions_total"]
    meta = read_meta(tmp_path / "one.xt.zarr")
    assert meta["model_checksum"] != checksum and meta["complete"] is True
    assert process_image(image, store, other)["status"] == "skipped"


def test_preset_models_get_the_same_weights_in_every_process():
    """Each worker builds a preset itself; unseeded random init would make every re-run see a foreign model."""
    from napari_xt.app import _batch_task
    from napari_xt.engine.identity import model_checksum

    first = model_checksum(_batch_task.cached_model("tiny-none-seg", "cpu"))
    _batch_task._models.pop(("tiny-none-seg", None, "cpu"))  # as a fresh worker process would
    assert model_checksum(_batch_task.cached_model("tiny-none-seg", "cpu")) == first
