"""The streaming engine end to end: real OME-TIFF on disk, real tiny xT models, real zarr result store."""

import os
import sys
import threading

import numpy as np
import pytest
import torch

from napari_xt.app.driver import predict, prepare
from napari_xt.app.events import RegionDone, RunFinished, RunStarted, WindowScored
from napari_xt.app.request import make_request
from napari_xt.errors import StoreExists, StoreMismatch
from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.store import ResultStore


def seg_model(context="transformer_xl", seed=0, **ctx):
    torch.manual_seed(seed)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder=context,
                   context_encoder_kwargs=ctx, heads={"segmentation": {"num_classes": 4}},
                   class_names={"segmentation": ["background", "stroma", "nucleus", "gland"]}, pixel_size=None)
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "seg.safetensors"
    save_model(seg_model(hidden=32, layers=1, heads=2), path)
    return path


def request(image, model_path, out, resume=False, **kw):
    kw.setdefault("use_mask", False)
    return make_request(str(image), str(model_path), str(out), resume=resume, device="cpu", **kw)


def prepare_run(req):
    """The engine's InferenceRun of a prepared request (iterate it for RegionResults)."""
    return prepare(req).run


def test_predict_writes_every_region_and_yields_progressively(tissue_ome_tiff, model_path, tmp_path):
    run = prepare_run(request(tissue_ome_tiff, model_path, tmp_path / "s.zarr", batch_size=2, level=1))
    seen = []
    for result in run:
        seen.append(result.n_done)
        assert result.labels is not None and result.labels.shape == (
            result.core[2] - result.core[0], result.core[3] - result.core[1])
        # the store already holds this region when the UI hears about it
        y0, x0, y1, x1 = result.core
        np.testing.assert_array_equal(run.store.labels[0][y0:y1, x0:x1], result.labels)
    assert seen == sorted(seen) and seen[-1] == run.n_total == 12  # 768 x 1024 at level 1, 256 px regions
    assert run.store.n_done == 12


def test_a_cpu_run_holds_the_allocator_policy_only_while_it_works(tissue_ome_tiff, model_path, tmp_path):
    """Freed activations are reused during a CPU run (engine/allocator.py); after it, glibc's defaults are back so a
    napari session does not keep a finished run's memory (held only where the policy exists: glibc)."""
    from napari_xt.engine import allocator

    run = prepare_run(request(tissue_ome_tiff, model_path, tmp_path / "a.zarr", batch_size=2, level=1))
    during = {allocator.active() for _ in run}
    assert during == {allocator._LIBC is not None}
    assert not allocator.active()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
@pytest.mark.parametrize("low_priority", [False, True])
def test_a_viewer_run_works_on_nicer_threads(tissue_ome_tiff, model_path, tmp_path, low_priority):
    """``low_priority`` (the dock's runs): compute, reading, post-processing, writing and the store's writer pool
    run 10 nicer than the caller, so the viewer's event loop gets a core; a CLI run keeps the caller's priority."""
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    run = prepare_run(request(tissue_ome_tiff, model_path, tmp_path / "n.zarr", batch_size=2, level=1,
                              low_priority=low_priority))
    seen: dict[str, int] = {}
    for _ in run:
        for t in threading.enumerate():
            if t.name.startswith("napari-xt") and t.native_id is not None:
                seen[t.name.split("_")[0]] = os.getpriority(os.PRIO_PROCESS, t.native_id)
    assert {"napari-xt-compute", "napari-xt-post", "napari-xt-write", "napari-xt-read", "napari-xt-store"} <= set(seen)
    assert set(seen.values()) == {min(19, base + 10) if low_priority else base}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller's own is untouched


def test_batch_size_does_not_change_results(tissue_ome_tiff, model_path, tmp_path):
    stores = []
    for bs in (1, 3):
        summary = predict(request(tissue_ome_tiff, model_path, tmp_path / f"b{bs}.zarr", batch_size=bs, level=1))
        assert summary.regions_done == 12 and summary.regions_failed == 0
        stores.append(ResultStore.open(tmp_path / f"b{bs}.zarr").labels[0][:])
    assert (stores[0] == stores[1]).mean() > 0.999


def test_window_order_does_not_change_results(tissue_ome_tiff, model_path, tmp_path):
    # one region per batch: the first batch of a run holds one region, so with larger batches another order groups
    # other regions together, and a batched sum may flip the argmax of a near-tie pixel (seen: 1 in 786k)
    a = predict(request(tissue_ome_tiff, model_path, tmp_path / "a.zarr", level=1, window_size=2, batch_size=1))
    b = predict(request(tissue_ome_tiff, model_path, tmp_path / "b.zarr", level=1, window_size=2, order="nearest",
                        focus=(1500.0, 2000.0), batch_size=1))
    assert a.regions_done == b.regions_done
    la = ResultStore.open(tmp_path / "a.zarr").labels
    lb = ResultStore.open(tmp_path / "b.zarr").labels
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x[:], y[:])


def test_cancel_then_resume_continues_and_skips_done(tissue_ome_tiff, model_path, tmp_path):
    out = tmp_path / "r.zarr"
    run = prepare_run(request(tissue_ome_tiff, model_path, out, batch_size=2, level=1))
    for result in run:
        if result.n_done >= 4:
            run.cancel()
    assert run.cancelled and 4 <= run.store.n_done < 12
    done_before = set(run.store.done_ids().tolist())
    assert not ResultStore.open(out).complete
    resumed = prepare_run(request(tissue_ome_tiff, model_path, out, batch_size=2, level=1, resume=True))
    written = []
    for result in resumed:
        written.append(result.region_id)
    assert not (set(written) & done_before) or resumed.store.n_done == 12
    assert resumed.store.n_done == 12
    assert ResultStore.open(out).n_done == 12  # the store's metadata (where it lives is the store's business)


def test_resume_with_another_model_is_refused(tissue_ome_tiff, model_path, tmp_path):
    out = tmp_path / "m.zarr"
    predict(request(tissue_ome_tiff, model_path, out, level=1, roi=(0, 0, 500, 500)))
    other = tmp_path / "other.safetensors"
    save_model(seg_model(hidden=32, layers=1, heads=2, seed=1), other)
    with pytest.raises(StoreMismatch, match="model"):
        prepare_run(request(tissue_ome_tiff, other, out, level=1, roi=(0, 0, 500, 500), resume=True))


def test_existing_store_is_never_silently_overwritten(tissue_ome_tiff, model_path, tmp_path):
    out = tmp_path / "o.zarr"
    predict(request(tissue_ome_tiff, model_path, out, level=1, roi=(0, 0, 500, 500)))
    with pytest.raises(StoreExists) as err:
        prepare_run(request(tissue_ome_tiff, model_path, out, level=1))
    assert err.value.is_store and err.value.path == out


def test_out_of_memory_halves_the_batch_and_skips_nothing(tissue_ome_tiff, model_path, tmp_path, oom_above_one):
    run = prepare_run(request(tissue_ome_tiff, model_path, tmp_path / "oom.zarr", batch_size=4, level=1))
    calls = oom_above_one(run)
    results = list(run)
    assert run.batch_size == 1 and run.store.n_done == 12
    assert sorted(r.region_id for r in results) == list(range(12))
    assert 4 in calls and 2 in calls


def test_cancel_from_another_thread_stops_within_a_batch(tissue_ome_tiff, model_path, tmp_path):
    run = prepare_run(request(tissue_ome_tiff, model_path, tmp_path / "c.zarr", batch_size=1, level=1))
    stop = threading.Timer(0.0, run.cancel)
    n = 0
    for _ in run:
        n += 1
        if n == 2:
            stop.start()
            stop.join()
    # the compute stops at once; only the batches already handed to the writer (queue depth) are still stored
    assert run.cancelled and n <= 2 + 1 + run.queue_depth
    assert run.store.n_done == n


def test_mask_and_roi_restrict_work(tissue_ome_tiff, model_path, tmp_path):
    summary = predict(request(tissue_ome_tiff, model_path, tmp_path / "roi.zarr", level=0,
                              roi=((0, 0), (0, 600), (600, 0))))
    assert 1 <= summary.regions_done <= 6
    assert summary.regions_skipped >= 48 - 6


def test_detection_and_classification_heads_reach_the_store(sar_ome_tiff, tmp_path):
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, in_chans=2, context_encoder="none",
                   heads={"detection": {"num_classes": 1}, "classification": {"num_classes": 3}},
                   mean=[-20.0, -25.0], std=[8.0, 8.0], input_kind="sar")
    model = build_model(cfg)
    path = tmp_path / "det.safetensors"
    save_model(model, path)
    # a random model: keep every peak so the table is non-empty (a run option, not a display filter)
    req = request(sar_ome_tiff, path, tmp_path / "det.zarr", level=1, use_mask=True, score_threshold=0.0)
    prepared = prepare(req)
    run = prepared.run
    events = []
    summary = predict(req, on_event=events.append, prepared=prepared)
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert events[-1].status == "complete" and events[-1].summary == summary
    assert events[0].layout is not None and events[0].layout.class_names == ["class 0", "class 1", "class 2"]
    image_scores, _ = run.store.image_scores()
    assert image_scores.shape == (3,) and summary.image_scores == pytest.approx(image_scores.tolist(), abs=1e-4)
    np.testing.assert_allclose(events[-1].image_scores, image_scores)
    dets = run.store.detections()
    assert len(dets["y"]) > 0
    assert dets["y"].max() < 1024 and dets["x"].max() < 1536  # level-0 px
    # the detections the events carried are the store's
    sent = [e.detections for e in events if isinstance(e, RegionDone) and e.detections is not None]
    assert sum(len(d) for d in sent) == len(dets["y"])
    np.testing.assert_allclose(np.sort(np.concatenate([d.score for d in sent])), np.sort(dets["score"]))
    windows = [e for e in events if isinstance(e, WindowScored)]
    assert windows
    scores = windows[0].scores
    assert scores.shape == (3,) and abs(scores.sum() - 1) < 1e-5


def test_score_threshold_and_max_detections_reach_the_store(sar_ome_tiff, tmp_path):
    """Detection options are run options: what is below the threshold or past the cap is never stored."""
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, in_chans=2, context_encoder="none",
                   heads={"detection": {"num_classes": 1}}, mean=[-20.0, -25.0], std=[8.0, 8.0], input_kind="sar")
    path = save_model(build_model(cfg), tmp_path / "det.safetensors")
    common = dict(level=1, roi=(0, 0, 1024, 1024))
    predict(request(sar_ome_tiff, path, tmp_path / "all.zarr", score_threshold=0.0, **common))
    everything = ResultStore.open(tmp_path / "all.zarr").detections()
    assert len(everything["score"]) > 4
    cut = float(np.median(everything["score"]))
    predict(request(sar_ome_tiff, path, tmp_path / "cut.zarr", score_threshold=cut, **common))
    kept = ResultStore.open(tmp_path / "cut.zarr").detections()
    assert 0 < len(kept["score"]) < len(everything["score"]) and kept["score"].min() >= cut
    predict(request(sar_ome_tiff, path, tmp_path / "cap.zarr", score_threshold=0.0, max_detections_per_region=1,
                    **common))
    capped = ResultStore.open(tmp_path / "cap.zarr").detections()
    assert 0 < len(capped["score"]) <= ResultStore.open(tmp_path / "cap.zarr").n_done


def test_an_incomplete_run_has_no_image_scores(sar_ome_tiff, tmp_path):
    """One rule for every caller: only a complete run stores and returns image scores."""
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, in_chans=2, context_encoder="none",
                   heads={"classification": {"num_classes": 3}}, mean=[-20.0, -25.0], std=[8.0, 8.0],
                   input_kind="sar")
    path = save_model(build_model(cfg), tmp_path / "cls.safetensors")
    req = request(sar_ome_tiff, path, tmp_path / "c.zarr", level=1, window_size=1, batch_size=1)
    prepared = prepare(req)
    ends = []

    def on_event(event):
        if isinstance(event, WindowScored):
            prepared.run.cancel()
        if isinstance(event, RunFinished):
            ends.append(event)

    summary = predict(req, on_event=on_event, prepared=prepared)
    assert summary.cancelled and ends[0].status == "cancelled"
    assert summary.image_scores is None and ends[0].image_scores is None and "image_scores" not in summary.to_dict()
    store = ResultStore.open(tmp_path / "c.zarr")
    assert store.window_scores() and store.image_scores() is None and not store.complete


def test_a_window_cancelled_between_its_last_region_and_its_scores_is_scored_on_resume(sar_ome_tiff, tmp_path,
                                                                                      monkeypatch):
    """A cancel can land after a window's last region is on disk but before its class scores are: resume must run
    that window again (its regions for the context only) instead of calling the store complete without them."""
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, in_chans=2, context_encoder="none",
                   heads={"classification": {"num_classes": 3}}, mean=[-20.0, -25.0], std=[8.0, 8.0],
                   input_kind="sar")
    path = save_model(build_model(cfg), tmp_path / "cls.safetensors")
    common = {"level": 1, "window_size": 1, "batch_size": 1}
    predict(request(sar_ome_tiff, path, tmp_path / "ref.zarr", **common))
    reference = ResultStore.open(tmp_path / "ref.zarr").window_scores()
    assert len(reference) > 2

    prepared = prepare(request(sar_ome_tiff, path, tmp_path / "c.zarr", **common))
    real = ResultStore.set_window_scores

    def cancelled_in_between(self, window_id, scores):
        if window_id == 1:  # window 1's last region is written; the cancel arrives before its scores are
            prepared.run.cancel()
            return
        real(self, window_id, scores)

    monkeypatch.setattr(ResultStore, "set_window_scores", cancelled_in_between)
    predict(prepared.request, prepared=prepared)
    monkeypatch.undo()
    store = ResultStore.open(tmp_path / "c.zarr")
    assert all(store.is_done(i) for i in prepared.run.plan.windows[1]) and 1 not in store.window_scores()

    summary = predict(request(sar_ome_tiff, path, tmp_path / "c.zarr", resume=True, **common))
    store = ResultStore.open(tmp_path / "c.zarr")
    assert not summary.cancelled and store.complete
    scores = store.window_scores()
    assert set(scores) == set(reference)
    for window, want in reference.items():
        np.testing.assert_allclose(scores[window], want, atol=1e-6)
