"""Context windows stepped in lockstep (issue 14: ``RunOptions.window_batch``) give the store of running them one by
one on the one-thread reference path.

The image (768 x 1024 px at level 1, 256 px regions, 2 x 2 windows) has windows of 4 regions and edge windows of 2,
so a cohort mixes lengths and windows leave it early (their memory rows are dropped, the others go on). Equal
per-window steps are compared (``batch_size = window_batch x chunk``): the model then does the same arithmetic per
window, only batched. What "the same" means on a CPU, measured: labels and detection places/classes are bit for bit
equal; oneDNN picks another convolution algorithm for a batch of 4 small (8 x 8) maps than for one, so the logits
move by ~1e-6: a uint8 probability may round the other way (10 of 3.1 M values, by 1), and the regressed floats of a
detection (sub-pixel place, size, score) and the window scores differ in the 7th digit.
Those are compared within that tolerance; a window whose memory got another window's row would be far outside it.
(With the same window batch, the staged pipeline and the one-thread path are compared bit for bit in everything:
tests/engine/test_pipeline.py.)
"""

import numpy as np
import pytest
import torch

from napari_xt.app.driver import prepare
from napari_xt.app.request import make_request
from napari_xt.engine.lockstep import Cohort, take_companions
from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.store import ResultStore


@pytest.fixture(scope="module", params=["transformer_xl", "hyper"])
def checkpoint(request, tmp_path_factory):
    """Segmentation + detection + classification: every kind of output the store keeps."""
    torch.manual_seed(0)
    kw = {"hidden": 32, "layers": 1, "heads": 2} if request.param == "transformer_xl" else {"hidden": 128, "layers": 1}
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder=request.param,
                   context_encoder_kwargs=kw,
                   heads={"segmentation": {"num_classes": 4}, "detection": {"num_classes": 2},
                          "classification": {"num_classes": 3}})
    return save_model(build_model(cfg), tmp_path_factory.mktemp("m") / f"{request.param}.safetensors")


def _request(image, model, out, **kw):
    kw.setdefault("window_size", 2)
    return make_request(str(image), str(model), str(out), device="cpu", use_mask=False, level=1,
                        score_threshold=0.0, probabilities=True, **kw)


def _run(image, model, out, pipeline=True, queue_depth=2, **kw):
    run = prepare(_request(image, model, out, **kw)).run
    run.pipeline, run.queue_depth = pipeline, queue_depth
    results = [(r.region_id, r.error, r.window_scores is not None) for r in run]
    return run, results


def _state(path):
    store = ResultStore.open(path)
    return {"labels": [np.asarray(a[:]) for a in store.labels], "probabilities": np.asarray(store.probabilities[:]),
            "detections": store.detections(), "windows": store.window_scores(), "done": store.done_ids()}


def assert_same_store(a, b, windows=4):
    sa, sb = _state(a), _state(b)
    assert len(sa["labels"]) == len(sb["labels"])
    for x, y in zip(sa["labels"], sb["labels"], strict=True):
        np.testing.assert_array_equal(x, y)  # every pyramid level, bitwise
    np.testing.assert_array_equal(sa["done"], sb["done"])
    pa, pb = sa["probabilities"].astype(int), sb["probabilities"].astype(int)
    assert np.abs(pa - pb).max() <= 1 and (pa != pb).mean() < 1e-5  # rounding of a uint8, rarely
    da, db = sa["detections"], sb["detections"]
    assert da.keys() == db.keys() and len(da["y"]) > 0
    # the table's rows follow the order regions were written in (window after window, or interleaved): compare sets.
    # At threshold 0 a random model's ~5000 peaks carry near-equal scores, and one object's suppression of its
    # neighbours (peaks within half its size) can flip on a 1e-6 difference of summation order: at most 0.1 % of the
    # objects may differ; every object found by both must agree in class, place, size and score.
    keys = [{(int(c), round(float(y), 1), round(float(x), 1)): i for i, (c, y, x) in
             enumerate(zip(d["cls"], d["y"], d["x"], strict=True))} for d in (da, db)]
    common = sorted(set(keys[0]) & set(keys[1]))
    assert len(set(keys[0]) ^ set(keys[1])) <= max(2, len(common) // 1000), (len(keys[0]), len(keys[1]))
    ia = np.array([keys[0][k] for k in common])
    ib = np.array([keys[1][k] for k in common])
    for k in ("y", "x", "h", "w", "score"):  # sub-pixel offsets, sizes and scores are regressed floats
        np.testing.assert_allclose(da[k][ia], db[k][ib], rtol=1e-5, atol=1e-5)
    assert sa["windows"].keys() == sb["windows"].keys() and len(sa["windows"]) == windows
    for w in sa["windows"]:
        np.testing.assert_allclose(sa["windows"][w], sb["windows"][w], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def references(tissue_ome_tiff, checkpoint, tmp_path_factory):
    """One-thread, one window at a time: the reference store for each per-window step (chunk) and window size."""
    refs = {}
    for chunk, window_size, n_windows in ((1, 2, 4), (2, 2, 4), (2, 3, 2)):
        out = tmp_path_factory.mktemp("ref") / f"ref{chunk}-{window_size}.zarr"
        run, results = _run(tissue_ome_tiff, checkpoint, out, pipeline=False, batch_size=chunk,
                            window_size=window_size)
        assert run.n_done == run.n_total == 12 and sum(w for *_, w in results) == n_windows
        refs[chunk, window_size] = out
    return refs


BOTTOM_LEFT = (1500.0, 0.0)  # level-0 px: the run starts with a 2-region window, which leaves its cohort first


@pytest.mark.parametrize(("chunk", "window_batch", "depth", "pipeline", "window_size", "focus"), [
    (1, 2, 1, True, 2, None), (1, 4, 2, True, 2, BOTTOM_LEFT), (2, 3, 3, True, 2, None),
    (2, 2, 2, False, 2, BOTTOM_LEFT), (1, 6, 1, True, 2, None),
    # 3 x 3 windows on a 3 x 4 grid: a 9-region window beside a 3-region column, whose regions sit at other places
    # of their window in the same step (per-window positions)
    (2, 2, 1, True, 3, None)])
def test_windows_in_lockstep_give_the_one_window_store(tissue_ome_tiff, checkpoint, references, tmp_path, chunk,
                                                       window_batch, depth, pipeline, window_size, focus):
    out = tmp_path / "wb.zarr"
    run, results = _run(tissue_ome_tiff, checkpoint, out, pipeline=pipeline, queue_depth=depth,
                        batch_size=chunk * window_batch, window_batch=window_batch, window_size=window_size,
                        focus=focus)
    assert run.n_done == 12 and run.window_batch == window_batch and run.chunk() == chunk
    assert sorted(r for r, _, w in results if not w) == list(range(12))
    assert_same_store(references[chunk, window_size], out, windows=4 if window_size == 2 else 2)


def test_the_windows_really_share_batches(tissue_ome_tiff, checkpoint, tmp_path, monkeypatch):
    """Not a test of results: the model is called with several windows at once (else the test above proves little)."""
    run = prepare(_request(tissue_ome_tiff, checkpoint, tmp_path / "s.zarr", batch_size=4, window_batch=4)).run
    calls = []
    real = run.model.stream_regions

    def spy(x, positions, memory, windows=1):
        calls.append((x.shape[0], windows))
        return real(x, positions, memory, windows=windows)

    monkeypatch.setattr(run.model, "stream_regions", spy)
    list(run)
    # first step: one region from each of the 4 windows of the first cohort; the 2-region windows then leave
    assert calls[0] == (4, 4) and (2, 2) in calls and max(w for _, w in calls) == 4


def test_out_of_memory_splits_the_cohort_and_skips_nothing(tissue_ome_tiff, checkpoint, references, tmp_path,
                                                           oom_above_one):
    out = tmp_path / "oom.zarr"
    run = prepare(_request(tissue_ome_tiff, checkpoint, out, batch_size=8, window_batch=4)).run
    sizes = oom_above_one(run)
    results = list(run)
    assert run.window_batch == 1 and run.batch_size == 1 and run.store.n_done == 12
    assert sorted(r.region_id for r in results if r.window_scores is None) == list(range(12))
    assert 4 in sizes and 2 in sizes  # one region from each of 4 windows, then of 2
    assert_same_store(references[1, 2], out)


def test_a_failed_read_leaves_its_window_short_as_on_the_one_window_path(tissue_ome_tiff, checkpoint, tmp_path,
                                                                         monkeypatch):
    import napari_xt.engine.reader as reader

    real = reader.read_region_pixels

    def broken(image, plan, region):
        if region.id in (1, 9):  # one in a 4-region window, one in a 2-region window
            raise OSError("corrupt tile")
        return real(image, plan, region)

    monkeypatch.setattr(reader, "read_region_pixels", broken)
    ref_run, _ = _run(tissue_ome_tiff, checkpoint, tmp_path / "ref.zarr", pipeline=False, batch_size=2)
    run, results = _run(tissue_ome_tiff, checkpoint, tmp_path / "wb.zarr", batch_size=4, window_batch=2)
    assert ref_run.n_failed == run.n_failed == 2 and run.n_done == ref_run.n_done == 10
    assert sorted(r for r, err, _ in results if err) == [1, 9]
    assert_same_store(tmp_path / "ref.zarr", tmp_path / "wb.zarr")


def test_cancel_then_resume_in_lockstep_is_exact(tissue_ome_tiff, checkpoint, references, tmp_path):
    out = tmp_path / "r.zarr"
    run = prepare(_request(tissue_ome_tiff, checkpoint, out, batch_size=3, window_batch=3)).run
    for result in run:
        if result.n_done >= 3:
            run.cancel()
    assert run.cancelled and 3 <= run.store.n_done < 12
    resumed = prepare(_request(tissue_ome_tiff, checkpoint, out, batch_size=2, window_batch=2, resume=True)).run
    list(resumed)
    assert resumed.store.n_done == 12
    assert_same_store(references[1, 2], out)


def test_read_order_follows_the_steps_and_choice_keeps_priority():
    from napari_xt.engine.plan import Plan, Region

    regions = tuple(Region(i, 0, i, (0, 0, 1, 1), (0, 0, 1, 1), window=0 if i < 5 else 1) for i in range(8))
    plan = Plan((1, 8), 0, 1.0, 1.0, (1, 8), 1, 0, "window", 2, "row-major", regions, ((0, 1, 2, 3, 4), (5, 6, 7)))
    cohort = Cohort.of(plan, [0, 1], first_chunk=1, chunk=2)
    assert [r.id for r in cohort.read_order()] == [0, 5, 1, 2, 6, 7, 3, 4]
    assert cohort.n_regions == 8

    lengths = {0: 4, 1: 2, 2: 4, 3: 4, 4: 2, 5: 4, 6: 4}
    pending = [1, 2, 3, 4, 5, 6]  # window 0 leads (taken by the run)
    done = {2}
    pick = take_companions(pending, 0, lambda w: w not in done, lengths.__getitem__, n=2, lookahead=1)
    assert pick == [3, 1] and pending == [4, 5, 6]  # same length first, then any, from the next 2; done one dropped
    assert take_companions([7], 0, lambda w: True, lengths.get, n=0) == []
