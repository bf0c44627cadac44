"""The streaming engine end to end: real OME-TIFF on disk, real tiny xT models, real zarr result store."""

import json
import threading

import numpy as np
import pytest
import torch

from napari_xt.engine.predict import PredictRequest, predict, prepare_run
from napari_xt.engine.store import ResultStore, StoreError
from napari_xt.model import XTConfig, build_model, save_model


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


def request(image, model_path, out, **kw):
    kw.setdefault("use_mask", False)
    return PredictRequest(image=str(image), model=str(model_path), out=str(out), device="cpu", **kw)


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


def test_batch_size_does_not_change_results(tissue_ome_tiff, model_path, tmp_path):
    stores = []
    for bs in (1, 3):
        summary = predict(request(tissue_ome_tiff, model_path, tmp_path / f"b{bs}.zarr", batch_size=bs, level=1))
        assert summary["regions_done"] == 12 and summary["regions_failed"] == 0
        stores.append(ResultStore.open(tmp_path / f"b{bs}.zarr").labels[0][:])
    assert (stores[0] == stores[1]).mean() > 0.999


def test_window_order_does_not_change_results(tissue_ome_tiff, model_path, tmp_path):
    a = predict(request(tissue_ome_tiff, model_path, tmp_path / "a.zarr", level=1, window_size=2))
    b = predict(request(tissue_ome_tiff, model_path, tmp_path / "b.zarr", level=1, window_size=2, order="nearest",
                        focus=(1500.0, 2000.0)))
    assert a["regions_done"] == b["regions_done"]
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
    summary = json.loads((out / "meta.json").read_text())
    assert summary.get("complete") or ResultStore.open(out).n_done == 12


def test_resume_with_another_model_is_refused(tissue_ome_tiff, model_path, tmp_path):
    out = tmp_path / "m.zarr"
    predict(request(tissue_ome_tiff, model_path, out, level=1, roi=(0, 0, 500, 500)))
    other = tmp_path / "other.safetensors"
    save_model(seg_model(hidden=32, layers=1, heads=2, seed=1), other)
    with pytest.raises(StoreError, match="model"):
        prepare_run(request(tissue_ome_tiff, other, out, level=1, roi=(0, 0, 500, 500), resume=True))


def test_existing_store_is_never_silently_overwritten(tissue_ome_tiff, model_path, tmp_path):
    out = tmp_path / "o.zarr"
    predict(request(tissue_ome_tiff, model_path, out, level=1, roi=(0, 0, 500, 500)))
    with pytest.raises(StoreError):
        prepare_run(request(tissue_ome_tiff, model_path, out, level=1))


def test_out_of_memory_halves_the_batch_and_skips_nothing(tissue_ome_tiff, model_path, tmp_path, monkeypatch):
    run = prepare_run(request(tissue_ome_tiff, model_path, tmp_path / "oom.zarr", batch_size=4, level=1))
    real = run.model.encode_regions
    calls = []

    def flaky(x):
        calls.append(x.shape[0])
        if x.shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x)

    monkeypatch.setattr(run.model, "encode_regions", flaky)
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
    assert run.cancelled and n <= 3


def test_mask_and_roi_restrict_work(tissue_ome_tiff, model_path, tmp_path):
    summary = predict(request(tissue_ome_tiff, model_path, tmp_path / "roi.zarr", level=0,
                              roi=[(0, 0), (0, 600), (600, 0)]))
    assert 1 <= summary["regions_done"] <= 6
    assert summary["regions_skipped"] >= 48 - 6


def test_detection_and_classification_heads_reach_the_store(sar_ome_tiff, tmp_path):
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, in_chans=2, context_encoder="none",
                   heads={"detection": {"num_classes": 1}, "classification": {"num_classes": 3}},
                   mean=[-20.0, -25.0], std=[8.0, 8.0], input_kind="sar")
    model = build_model(cfg)
    path = tmp_path / "det.safetensors"
    save_model(model, path)
    run = prepare_run(request(sar_ome_tiff, path, tmp_path / "det.zarr", level=1, use_mask=True),)
    run.options.score_threshold = 0.0  # a random model: keep every peak so the table is non-empty
    results = []
    summary = predict(None, on_region=results.append, run=run)
    image_scores, _ = run.store.image_scores()
    assert image_scores.shape == (3,) and summary["image_scores"] == pytest.approx(image_scores.tolist(), abs=1e-4)
    dets = run.store.detections()
    assert len(dets["y"]) > 0
    assert dets["y"].max() < 1024 and dets["x"].max() < 1536  # level-0 px
    assert any(r.window_scores is not None for r in results)
    scores = next(r.window_scores for r in results if r.window_scores is not None)
    assert scores.shape == (3,) and abs(scores.sum() - 1) < 1e-5
