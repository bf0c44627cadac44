"""Window ids are the plan's, not the run order's: re-prioritising mid-run never files scores under another window."""

from __future__ import annotations

from napari_xt.engine.predict import PredictRequest, predict, prepare_run


def test_window_scores_keep_their_ids_when_the_view_moves(tissue_ome_tiff, tmp_path):
    request = PredictRequest(image=str(tissue_ome_tiff), model="tiny-hyper-cls", out=str(tmp_path / "c.xt.zarr"),
                             region_size=256, window_size=2, use_mask=False, focus=(0.0, 0.0), batch_size=4)
    run = prepare_run(request)
    n_windows = len(run.plan.windows)
    window_of = {r.id: r.window for r in run.plan.regions}
    assert sorted(set(window_of.values())) == list(range(n_windows))
    seen_windows = []

    def on_region(result):
        if result.window_scores is not None:
            seen_windows.append(window_of[result.region_id])
            if len(seen_windows) == 1:
                run.prioritise((1e9, 1e9))  # jump to the far corner after the first window
                run.prioritise((0.0, 1e9))  # and again

    predict(request, on_region=on_region, run=run)
    scores = run.store.window_scores()
    assert sorted(scores) == list(range(n_windows))  # one entry per window, none overwritten by another
    assert len(seen_windows) == n_windows and len(set(seen_windows)) == n_windows
    assert seen_windows[0] == 0  # the focus (top-left) window ran first
    meta_windows = run.store.meta["plan"]["windows"]
    assert all(window_of[i] == w for w, ids in enumerate(meta_windows) for i in ids)
