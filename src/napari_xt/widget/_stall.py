"""How long the viewer is kept waiting: a 5 ms QTimer's longest gap, and a wait that keeps Qt running.

One implementation for the tests, ``benchmarks/bench_widget.py`` and ``docs/make_screenshot.py``, so their stall
figures are measured the same way.
"""

from __future__ import annotations

import time

from qtpy.QtCore import QTimer


class GapMeter:
    """Longest interval between ticks of a 5 ms QTimer (``max_gap``, s); gaps longer than ``goal`` are listed in
    ``long`` as (when the gap ended, its length)."""

    def __init__(self, goal: float = 0.050):
        self.goal = goal
        self.max_gap, self.ticks = 0.0, 0
        self.last: float | None = None
        self.long: list[tuple[float, float]] = []
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self.tick)

    def tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            gap = now - self.last
            self.max_gap = max(self.max_gap, gap)
            if gap > self.goal:
                self.long.append((now, gap))
        self.last = now
        self.ticks += 1

    def start(self) -> None:
        self.max_gap, self.last, self.ticks, self.long = 0.0, None, 0, []
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.max_gap


def spin_until(app, condition, timeout: float = 600.0) -> None:
    """Process Qt events until ``condition()`` holds (scripts without pytest-qt's ``waitUntil``)."""
    t0 = time.perf_counter()
    while not condition():
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the widget did not get there in time")
        app.processEvents()
        time.sleep(0.001)
