"""The runner hands region and window events to the dock in batches: in order, all of them before the run's end, and
the progress bar (whose every update repaints the whole window through a nested event loop) moved at most every
``BAR_S`` and always at the end."""

from __future__ import annotations

from napari_xt.app.events import RegionDone, RunFinished, WindowScored
from napari_xt.widget import _runner
from napari_xt.widget._runner import Runner


class Bar:
    """napari's progress bar, as far as the runner uses it."""

    def __init__(self, total):
        self.total, self.n, self.updates = total, 0, 0

    def update(self, step):
        self.n += step
        self.updates += 1


def test_events_are_batched_in_order_and_all_arrive_before_the_end(qtbot):
    import numpy as np

    runner = Runner()
    runner.state = "running"
    bar = runner.progress = Bar(20)
    seen, ended = [], []
    runner.region.connect(lambda e: seen.append(("region", e.region_id)))
    runner.window.connect(lambda e: seen.append(("window", e.window_id)))
    runner.ended.connect(ended.append)

    def region(i):
        return RegionDone(i, (0, 0, 1, 1), i + 1, 20, 0.0, None)

    runner._on_yielded(region(0))
    assert seen == [("region", 0)] and bar.n == 1  # the first at once: the first overlay is not delayed
    for i in range(1, 10):
        runner._on_yielded(region(i))
    runner._on_yielded(WindowScored(0, np.zeros(3, np.float32), (0, 0, 1, 1), 10, 20))
    assert len(seen) == 1  # the rest wait for the batch
    qtbot.waitUntil(lambda: len(seen) == 11, timeout=2000)
    assert seen == [("region", i) for i in range(10)] + [("window", 0)]
    assert bar.n == 1 and bar.updates == 1  # within BAR_S of its last move: the bar waits
    qtbot.wait(int(_runner.BAR_S * 1000) + 50)
    runner._on_yielded(region(10))
    qtbot.waitUntil(lambda: len(seen) == 12, timeout=2000)
    assert bar.n == 11 and bar.updates == 2  # later than BAR_S: it catches up in one move
    for i in range(11, 20):
        runner._on_yielded(region(i))
    runner._on_yielded(RunFinished("complete", _runner._short_summary(None)))
    assert [s for s in seen if s[0] == "region"] == [("region", i) for i in range(20)]  # before the end...
    assert len(ended) == 1 and bar.n == 20 and bar.updates == 3  # ...and the bar full at the end, in one move
    qtbot.wait(2 * _runner.DELIVER_MS)
    assert len(seen) == 21  # nothing delivered twice
