"""Steering a run from the dock: panning re-orders the windows still to do, progress in napari's Activity dock, and
a run that fails half-way (or a Resume that is refused) leaves the regions, the buttons and the bar right."""

from __future__ import annotations

import math
import threading

import numpy as np
from dockhelpers import buttons, configure, make_dock
from napari.utils import progress

from napari_xt.engine.run import InferenceRun
from napari_xt.store import ResultStore
from napari_xt.widget import _fields as F


def _window_centre(plan, window: int) -> tuple[float, float]:
    cores = np.array([plan.regions[i].core for i in plan.windows[window]], dtype=float)
    f = plan.downsample_to_level0
    return (cores[:, 0].min() + cores[:, 2].max()) / 2 * f, (cores[:, 1].min() + cores[:, 3].max()) / 2 * f


def test_panning_while_running_runs_the_windows_nearest_the_view_next(make_napari_viewer, qtbot, tmp_path,
                                                                      monkeypatch, notes):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    rng = np.random.default_rng(0)
    viewer.add_image(rng.integers(0, 255, (1024, 1024, 3), dtype=np.uint8), rgb=True, name="big")
    configure(dock, "tiny-hyper-seg", level=0, region_size=128, window=2)  # 8 x 8 regions, 16 windows of 2 x 2
    camera = F.camera(viewer)
    camera.center = (0.0, 0.0)  # Run starts at the top-left corner

    popped: list[int] = []  # window ids in the order the engine took them
    asked_second, go_on, prioritised = threading.Event(), threading.Event(), threading.Event()
    received = []

    def on_prepared(run):
        take, reorder = run._next_window, run.prioritise

        def next_window():  # holds the engine before its second window until the view has moved
            if len(popped) == 1:
                asked_second.set()
                go_on.wait(60)
            window = take()
            if window is not None:
                popped.append(window)
            return window

        def prioritise(point):
            reorder(point)
            if min(point) > 500:  # not the debounced echo of setting the camera before Run
                prioritised.set()

        run._next_window, run.prioritise = next_window, prioritise

    dock.runner.prepared.connect(on_prepared)
    dock.runner.region.connect(lambda p: received.append(p.region_id))
    dock.run_button.native.click()
    qtbot.waitUntil(asked_second.is_set, timeout=60_000)
    plan = dock.runner.run.plan
    corner = {r.id for r in plan.regions if r.row < 2 and r.col < 2}
    assert set(plan.windows[popped[0]]) == corner  # the focus at Run

    camera.center = (1000.0, 1000.0)  # pan to the bottom-right corner; the dock re-orders after a 300 ms debounce
    qtbot.waitUntil(prioritised.is_set, timeout=10_000)
    go_on.set()
    qtbot.waitUntil(lambda: len(popped) >= 4, timeout=60_000)
    dock.cancel_button.native.click()
    qtbot.waitUntil(lambda: not dock.runner.busy, timeout=60_000)

    far = {r.id for r in plan.regions if r.row >= 6 and r.col >= 6}
    assert set(plan.windows[popped[1]]) == far  # the window under the new view is next
    distances = [math.dist(_window_centre(plan, w), (1000.0, 1000.0)) for w in popped[1:]]
    assert distances == sorted(distances)  # and then outwards from it
    after_first = [i for i in received if i not in corner]
    assert set(after_first[:4]) == far  # the regions that finished next are those nearest the new centre
    assert not notes.errors()


def test_failure_half_way_keeps_regions_buttons_and_activity_progress_right(make_napari_viewer, qtbot,
                                                                            tissue_ome_tiff, seg_checkpoint, tmp_path,
                                                                            monkeypatch, notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.open(str(tissue_ome_tiff), plugin="napari-xt")
    assert dock.add_checkpoint(seg_checkpoint)
    configure(dock, str(seg_checkpoint))  # 12 regions, one per batch
    out = tmp_path / "flaky.xt.zarr"
    dock.out.value = out

    calls = {"n": 0}
    forward = InferenceRun._forward_batch

    def flaky(self, batch, memory):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("simulated driver failure")
        return forward(self, batch, memory)

    monkeypatch.setattr(InferenceRun, "_forward_batch", flaky)
    bars = []  # per run: (its progress bar, its total at the start, its count as each region arrives)
    listed = []  # progress bars napari announced to its Activity dock (what the dock's dialog shows)
    progress._all_instances.events.changed.connect(lambda e: listed.extend(e.added))

    def on_region(_payload):
        bar = dock.runner.progress
        if not bars or bars[-1][0] is not bar:
            bars.append((bar, bar.total, []))
        bars[-1][2].append(bar.n)

    dock.runner.region.connect(on_region)
    ends = []
    dock.runner.ended.connect(ends.append)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: bool(ends), timeout=60_000)

    assert ends[-1].status == "failed"
    assert any("simulated driver failure" in m and "The 3 finished regions are kept" in m for m in notes.errors())
    assert buttons(dock) == (True, False, True)
    assert ResultStore.open(out).n_done == 3 and "failed" in dock.status.value
    bar, total, seen = bars[-1]
    # the progress bar moves once per batch of regions handed to the viewer, and never past the failure
    assert bar in listed and total == 12 and bar.n == 3 and bar.total == 12
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] < 3

    # Resume with another model: refused before anything is written, and the buttons stay as they were
    monkeypatch.undo()
    dock.model.value = "tiny-xl-seg"
    dock.resume_button.native.click()
    qtbot.waitUntil(lambda: not dock.runner.busy, timeout=60_000)
    assert any("was made with" in m and "Name another Results store" in m for m in notes.errors()), notes.errors()
    assert buttons(dock) == (True, False, True) and ResultStore.open(out).n_done == 3
    labels = [layer.name for layer in viewer.layers if layer.name.startswith("xT labels")]
    assert labels == ["xT labels [flaky.xt.zarr]"]

    dock.model.value = str(seg_checkpoint)
    dock.resume_button.native.click()
    qtbot.waitUntil(lambda: len(ends) == 2, timeout=90_000)
    assert ends[-1].status == "complete" and ends[-1].summary.regions_new == 9
    bar, total, seen = bars[-1]
    # regions done before are re-encoded for their window's context: they arrive again but do not count
    # (the bar moves at most twice a second, so while regions stream in it may lag; it never runs ahead)
    assert bar in listed and total == 9 and len(seen) >= 9 and seen == sorted(seen) and seen[-1] <= 8
    assert bar.n == bar.total == 9  # it counted regions (not window scores or the end) and never overflowed
    assert buttons(dock) == (True, False, False) and ResultStore.open(out).complete
