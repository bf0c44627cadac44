"""Window ids are the plan's, not the run order's: re-prioritising mid-run never files scores under another window."""

from __future__ import annotations

from napari_xt.app.driver import predict, prepare
from napari_xt.app.events import WindowScored
from napari_xt.app.request import make_request


def test_window_scores_keep_their_ids_when_the_view_moves(tissue_ome_tiff, tmp_path):
    request = make_request(str(tissue_ome_tiff), "tiny-hyper-cls", str(tmp_path / "c.xt.zarr"), region_size=256,
                           window_size=2, use_mask=False, focus=(0.0, 0.0), batch_size=4)
    prepared = prepare(request)
    run = prepared.run
    plan = run.plan
    n_windows = len(plan.windows)
    windows_before, order_before = plan.windows, plan.run_order
    window_of = {r.id: r.window for r in plan.regions}
    assert sorted(set(window_of.values())) == list(range(n_windows))
    assert all(window_of[i] == w for w, ids in enumerate(plan.windows) for i in ids)  # plan.windows[w] is window w
    seen_windows = []
    queued: list[int] = []

    def on_event(event):
        if isinstance(event, WindowScored):
            assert all(window_of[i] == event.window_id for i in plan.windows[event.window_id])
            seen_windows.append(event.window_id)
            if len(seen_windows) == 1:
                run.prioritise((1e9, 1e9))  # jump to the far corner after the first window
                run.prioritise((0.0, 1e9))  # and again
                queued.extend(run._pending)  # the windows not started yet, in their new order

    predict(request, on_event=on_event, prepared=prepared)
    scores = run.store.window_scores()
    assert sorted(scores) == list(range(n_windows))  # one entry per window, none overwritten by another
    assert len(seen_windows) == n_windows and len(set(seen_windows)) == n_windows
    assert seen_windows[0] == 0  # the focus (top-left) window ran first
    # the run's own queue was re-ordered: the windows not started yet ran in the new order, nearest the last point
    # first. Those already started (the compute thread and the read-ahead run ahead of the events by at most the
    # batches the pipeline's queues hold) finished first.
    nearest = plan.order_near((0.0, 1e9), [w for w in order_before if w != 0])[0]
    assert queued and queued == plan.order_near((0.0, 1e9), queued)
    assert [w for w in seen_windows if w in queued] == queued
    assert nearest not in order_before[:3] and seen_windows.index(nearest) <= 1 + 2 * run.queue_depth + 2
    assert plan.windows == windows_before and plan.run_order == order_before  # the frozen plan never changed
    meta_windows = run.store.meta["plan"]["windows"]
    assert all(window_of[i] == w for w, ids in enumerate(meta_windows) for i in ids)
