"""The staged pipeline (issue 14): the same store as the one-thread reference path, typed writer failures that leave a
resumable store, bounded cancel; and the fast pieces it is built from match what they replace, bit for bit."""

import errno

import numpy as np
import pytest
import torch
import zarr

from napari_xt.app.driver import events, prepare
from napari_xt.app.events import RunFinished
from napari_xt.app.request import make_request
from napari_xt.engine.normalise import Normaliser
from napari_xt.engine.pipeline import StoreWriteError
from napari_xt.engine.postprocess import batch_labels
from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.store import ResultStore
from napari_xt.store.chunkio import ChunkWriter


@pytest.fixture(scope="module")
def all_heads_path(tmp_path_factory):
    """Segmentation + detection + classification, causal context: every kind of output the store keeps."""
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2},
                   heads={"segmentation": {"num_classes": 4}, "detection": {"num_classes": 2},
                          "classification": {"num_classes": 3}})
    path = tmp_path_factory.mktemp("m") / "all.safetensors"
    save_model(build_model(cfg), path)
    return path


def _run(image, model, out, pipeline=True, queue_depth=2, **kw):
    kw.setdefault("window_size", 2)
    req = make_request(str(image), str(model), str(out), device="cpu", use_mask=False, level=1,
                       score_threshold=0.0, probabilities=True, **kw)
    run = prepare(req).run
    run.pipeline, run.queue_depth = pipeline, queue_depth
    results = [(r.region_id, r.n_done, r.error, r.window_scores is not None) for r in run]
    return run, results


def _store_state(path):
    store = ResultStore.open(path)
    return ([np.asarray(a[:]) for a in store.labels], np.asarray(store.probabilities[:]), store.detections(),
            store.window_scores(), store.done_ids())


def _assert_same_store(a, b):
    la, pa, da, wa, ia = _store_state(a)
    lb, pb, db, wb, ib = _store_state(b)
    assert len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))  # every pyramid level, bitwise
    assert np.array_equal(pa, pb) and np.array_equal(ia, ib)
    assert da.keys() == db.keys() and all(np.array_equal(da[k], db[k]) for k in da)
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize(("batch_size", "window_batch", "depth", "window_size"),
                         [(1, 1, 1, 2), (3, 1, 3, 2), (4, 2, 1, 2), (6, 3, 2, 2), (4, 2, 2, 3)])
def test_staged_pipeline_matches_the_one_thread_path(tissue_ome_tiff, all_heads_path, tmp_path, batch_size,
                                                     window_batch, depth, window_size):
    """Compute, post-processing and writes on their own threads change nothing, bit for bit: the same arithmetic
    (same batches, same windows in lockstep) on other threads. Across window batches see test_window_batch.py."""
    kw = dict(batch_size=batch_size, window_batch=window_batch, window_size=window_size)
    ref_run, ref = _run(tissue_ome_tiff, all_heads_path, tmp_path / "ref.zarr", pipeline=False, **kw)
    assert ref_run.n_done == ref_run.n_total == 12 and any(w for *_, w in ref)
    out = tmp_path / "staged.zarr"
    run, results = _run(tissue_ome_tiff, all_heads_path, out, queue_depth=depth, **kw)
    assert results == ref  # same results, same order, same progress counts
    _assert_same_store(tmp_path / "ref.zarr", out)


class _DiskFull:
    """``write_region`` that succeeds ``ok`` times, then fails as a full disk does."""

    def __init__(self, write, ok):
        self.write, self.ok = write, ok

    def __call__(self, *args, **kwargs):
        if self.ok <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.ok -= 1
        return self.write(*args, **kwargs)


def test_a_full_disk_stops_the_run_with_a_typed_error_and_resume_finishes_it(tissue_ome_tiff, model_path,
                                                                              tmp_path):
    def req(out, resume=False):
        return make_request(str(tissue_ome_tiff), str(model_path), str(out), device="cpu", use_mask=False, level=1,
                            batch_size=2, resume=resume)

    reference = tmp_path / "ref.zarr"
    list(events(prepare(req(reference))))
    out = tmp_path / "full.zarr"
    prepared = prepare(req(out))
    store = prepared.run.store
    store.write_region = _DiskFull(store.write_region, ok=3)  # type: ignore[method-assign]
    seen = list(events(prepared))
    last = seen[-1]
    assert isinstance(last, RunFinished) and last.status == "failed"
    assert isinstance(last.error, StoreWriteError) and "no space left" in str(last.error)
    assert last.error.region_id is not None and str(out) in str(last.error)
    assert ResultStore.open(out).n_done == 3  # what was written is done; nothing after the failure is
    finished = list(events(prepare(req(out, resume=True))))[-1]
    assert isinstance(finished, RunFinished) and finished.status == "complete"
    a, b = ResultStore.open(reference), ResultStore.open(out)
    assert all(np.array_equal(x[:], y[:]) for x, y in zip(a.labels, b.labels))


def test_cancel_stops_within_the_batches_already_in_flight(tissue_ome_tiff, model_path, tmp_path):
    req = make_request(str(tissue_ome_tiff), str(model_path), str(tmp_path / "c.zarr"), device="cpu",
                       use_mask=False, level=1, batch_size=2, window_size=4)
    run = prepare(req).run
    run.queue_depth = 1
    after = 0
    for _ in run:
        if not run.cancelled:
            run.cancel()
        else:
            after += 1
    # the batch being computed plus at most one waiting before each of the two stages behind the model
    assert run.cancelled and after <= run.batch_size * (2 * run.queue_depth + 1)
    assert run.store.n_done < run.n_total


def test_fast_argmax_is_torch_argmax():
    torch.manual_seed(1)
    for k in (1, 2, 5, 300):
        x = torch.randn(2, k, 33, 17)
        x[0, :, 0, 0] = 0.5  # a tie: the first class wins
        x[1, min(1, k - 1), 2, 2] = float("nan")
        labels, probs = batch_labels(x, probabilities=True)
        assert labels.dtype == (np.uint8 if k <= 256 else np.uint16)
        np.testing.assert_array_equal(labels, x.argmax(1).numpy())
        np.testing.assert_array_equal(probs, (x.softmax(1) * 255).round().byte().numpy())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_batch_normalise_is_the_per_region_normalise_bitwise(dtype):
    rng = np.random.default_rng(0)
    norm = Normaliser(np.array([0.4, 0.5], np.float32), np.array([0.2, 0.3], np.float32),
                      {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0}[dtype], 2)
    top = 255 if dtype == np.uint8 else 60000
    pixels = [(rng.random((20, 30, 3)) * top).astype(dtype) for _ in range(3)]
    if dtype == np.float32:
        pixels[1][4, 5, 0] = np.nan
    want = torch.from_numpy(np.stack([norm(p) for p in pixels])).permute(0, 3, 1, 2).contiguous()
    assert torch.equal(norm.batch(pixels), want)
    assert torch.equal(norm.batch(pixels, channels_last=True), want)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, bool])
def test_chunk_writer_writes_what_zarr_writes(tmp_path, dtype):
    rng = np.random.default_rng(0)
    kw = dict(shape=(70, 50), chunks=(16, 16), dtype=dtype, fill_value=0)
    ours, theirs = (zarr.create_array(str(tmp_path / n), **kw) for n in ("ours", "theirs"))
    writer = ChunkWriter(ours, cache_chunks=2)  # a tiny cache: misses read the chunk back from disk
    assert writer.fast
    for _ in range(40):
        y0, x0 = rng.integers(0, 70), rng.integers(0, 50)
        y1, x1 = rng.integers(y0 + 1, 71), rng.integers(x0 + 1, 51)
        value = (rng.random((y1 - y0, x1 - x0)) * (3 if dtype is bool else 700)).astype(dtype)
        writer[y0:y1, x0:x1] = value
        theirs[y0:y1, x0:x1] = value
    writer[0:16, 0:16] = np.zeros((16, 16), dtype)  # a fill-only chunk has no file, as zarr does it
    theirs[0:16, 0:16] = np.zeros((16, 16), dtype)
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "ours"))[:], theirs[:])
    assert not (tmp_path / "ours" / "c" / "0" / "0").exists()


def test_chunk_writer_falls_back_to_zarr_for_other_codecs(tmp_path):
    arr = zarr.create_array(str(tmp_path / "a"), shape=(40, 40), chunks=(16, 16), dtype=np.uint8,
                            compressors=None, filters=None, serializer="auto", fill_value=0)
    arr2 = zarr.create_array(str(tmp_path / "b"), shape=(40, 40), chunks=(16, 16), dtype=np.uint8,
                             compressors=zarr.codecs.BloscCodec(), fill_value=0)
    for a in (arr, arr2):
        w = ChunkWriter(a)
        w[3:30, 5:39] = np.full((27, 34), 7, np.uint8)
        assert (zarr.open_array(str(a.store.root))[3:30, 5:39] == 7).all()
    assert ChunkWriter(arr).fast and not ChunkWriter(arr2).fast
