"""Worker wiring: prepare a run in one napari thread worker, stream its events in another, report on the main thread.

Two workers because the total of the progress bar in napari's Activity dock (regions still to do) is only known
once the image is opened, the model loaded and the plan made, which must not happen on the main thread either (the
bar itself is made during the preparation, its total set after it). All signals here are emitted on the main thread
(worker signals are queued to it).

Region and window events are handed on in batches, at most every ``DELIVER_MS`` (the first at once): profiling
``benchmarks/bench_widget.py`` showed the viewer's stalls came from per-region main-thread work, above all napari's
progress bar, whose every update runs a nested ``processEvents`` that repaints the whole window (under software GL a
full composite of the canvas), and the dock's status line, each repainted once per region as regions arrived one
event-loop pass apart. A batch updates the bar once and lets Qt fold the status and overlay repaints into one pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from psygnal import Signal
from qtpy.QtCore import QTimer
from superqt.utils import qthrottled

from ..app import session
from ..app.driver import PreparedRun
from ..app.events import (
    RegionDone,
    RegionFailed,
    RunEvent,
    RunFinished,
    RunStarted,
    RunSummary,
    ScoreLayout,
    WindowScored,
)
from ..app.request import PredictRequest
from ._messages import describe
from ._overlays import open_label_levels

log = logging.getLogger(__name__)

# a little longer than the overlays' refresh throttle (100 ms), so each batch finds it idle and the layers catch up in
# the same event-loop pass as the status and the progress bar
DELIVER_MS = 125
# napari's progress bar repaints the whole window in a nested event loop on every update (tens of ms under software
# GL): move it at most twice a second, and always at the end
BAR_S = 0.5
# the bar is made this long after the click: after the run's Labels layer goes in (``_staged_layer.STEP_MS``)
BAR_AFTER_MS = 120
# the stream starts this long after the preparation ends (see ``_on_prepared``)
STREAM_AFTER_MS = 40


def _prepare(request: PredictRequest, layer: Any, model: Any) -> tuple[PreparedRun, list]:
    """The preparation, and the new store's label pyramid opened in the same worker: opening zarr arrays on the main
    thread waits on zarr's one I/O loop, which the run's image reads keep busy (bench_widget.py --sample)."""
    prepared = session.prepare(request, layer, model)
    return prepared, open_label_levels(prepared.run.store.path)


class Runner:
    """One run at a time: ``start`` → ``prepared`` → (``region`` | ``window``)* → ``ended``; or ``failed`` alone."""

    prepared = Signal(object)  # the engine's InferenceRun, before the first region (``layout``: its heat-map layout)
    region = Signal(object)  # RegionDone | RegionFailed
    window = Signal(object)  # WindowScored (classification heads)
    ended = Signal(object)  # RunFinished
    failed = Signal(str)  # a sentence: nothing ran (bad input) or the workers broke
    state_changed = Signal(str)

    def __init__(self) -> None:
        self.run: Any = None  # the engine's InferenceRun (typed in app.driver; the widget does not import engine.run)
        self.layout: ScoreLayout | None = None
        self.request: PredictRequest | None = None
        self.state = "idle"  # idle | preparing | running | cancelling
        self.progress: Any = None  # napari progress bar of the stream (Activity dock)
        self._model_key: str | None = None
        self.label_levels: list = []  # the store's label pyramid, opened by the preparing worker (see ``_prepare``)
        self._model: Any = None  # kept so Resume of a random-init preset continues with the very same weights
        self._prep_worker: Any = None
        self._worker: Any = None
        self._gen: Iterator[RunEvent] | None = None
        self._cancel_requested = False
        self._done_start = 0
        self._bar_total = 0  # regions the bar counts to (set on a turn after the run starts)
        self._bar_moved = 0.0  # perf_counter of the last progress-bar update
        self._last_region: RegionDone | RegionFailed | None = None  # the newest one delivered (the bar's count)
        self._queue: list[RunEvent] = []  # region and window events not handed on yet (see _deliver)
        self._deliver_soon = qthrottled(self._deliver, timeout=DELIVER_MS, leading=True)

    # -- control ---------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.state != "idle"

    def _set_state(self, state: str) -> None:
        self.state = state
        self.state_changed.emit(state)

    def start(self, request: PredictRequest, layer: Any) -> None:
        """Prepare and run ``request`` on ``layer`` in napari thread workers."""
        if self.busy:
            raise RuntimeError("a run is already going; cancel it first")
        self.request, self.run, self.layout, self._cancel_requested = request, None, None, False
        self.progress = None  # the last run's bar was closed when its worker finished
        self._bar_total = 0
        self._queue = []
        model = self._model if self._model_key == request.model else None
        self._set_state("preparing")
        # no napari progress bar for this short step: making its widget in the Activity dock cost the click on Run
        # 20-50 ms of main thread under software GL (bench_widget.py --sample; issue 25); the status line says it
        worker = create_worker(_prepare, request, layer, model, _ignore_errors=True)
        worker.returned.connect(self._on_prepared)
        worker.errored.connect(self._on_prepare_error)
        self._prep_worker = worker
        worker.start()
        QTimer.singleShot(BAR_AFTER_MS, self._make_bar)

    def _make_bar(self) -> None:
        """The run's bar in napari's Activity dock, made while the image opens and the model loads (its total comes
        later): making its widget costs the main thread 20-50 ms, which at the end of the preparation added to the
        overlay's first draw in one event-loop stall (bench_widget.py --sample on a 100,000 px slide; issue 25)."""
        if self.state == "preparing" and self.progress is None:
            from napari.utils import progress

            # its final description now: changing it later relays the main window out (~10 ms, in the turn the
            # run starts and its layer gets the store; bench_widget.py --sample)
            name = Path(self.request.out).name if self.request is not None else "preparing"
            self.progress = progress(total=0, desc=f"xT: {name}")

    def _size_bar(self) -> None:
        bar = self.progress
        if bar is not None and self._bar_total and bar.total != self._bar_total:
            bar.total = self._bar_total

    def _close_bar(self) -> None:
        bar, self.progress = self.progress, None
        if bar is not None:
            bar.close()

    def cancel(self) -> None:
        """Stop after the batch in flight; finished regions stay in the store."""
        if self.state == "preparing":
            self._cancel_requested = True
            self._set_state("cancelling")
        elif self.state == "running" and self.run is not None:
            self.run.cancel()
            self._set_state("cancelling")

    def prioritise(self, point: tuple[float, float]) -> None:
        if self.state == "running" and self.run is not None:
            self.run.prioritise(point)

    # -- worker callbacks (main thread) ------------------------------------------------------------------------
    def _on_prepare_error(self, err: BaseException) -> None:
        self._prep_worker = None
        self._close_bar()
        if not isinstance(err, ValueError):
            log.error("preparing the run failed", exc_info=err)
        self._set_state("idle")
        self.failed.emit(describe(err))

    def _on_prepared(self, result: tuple[PreparedRun, list]) -> None:
        prepared, self.label_levels = result
        self._prep_worker = None
        run = prepared.run
        assert self.request is not None
        self._model_key, self._model = self.request.model, prepared.model
        self.run, self.layout = run, prepared.layout
        if self._cancel_requested:
            self._close_bar()
            self._set_state("idle")
            self.ended.emit(RunFinished("cancelled", _short_summary(run)))
            return
        self.prepared.emit(run)
        remaining = max(1, run.n_total - run.n_done)
        self._gen = session.stream(prepared)
        worker = create_worker(_relay, self._gen, _ignore_errors=True)
        self._make_bar()  # (when the preparation was quicker than the bar's turn)
        # the bar counts finished regions (napari would count every yield; ours include window scores, re-encoded
        # context regions and the end), so it reaches its total exactly when the last region is stored
        self._bar_total = remaining
        if self.progress is not None:
            worker.finished.connect(self.progress.close)
            # its total a turn later: not in this turn's stall (the store's layer, the stream's start)
            QTimer.singleShot(BAR_AFTER_MS, self._size_bar)
        self._done_start = run.n_done
        self._last_region, self._bar_moved = None, 0.0
        worker.yielded.connect(self._on_yielded)
        worker.errored.connect(self._on_stream_error)
        worker.aborted.connect(self._on_aborted)
        self._worker = worker
        self._set_state("running")
        # a turn later: this turn gives the run's layer its store and repaints it, and the stream's first moments
        # (its threads starting, the model's tensors converted, the first reads) would contend with both for the GIL
        QTimer.singleShot(STREAM_AFTER_MS, worker.start)

    def _on_yielded(self, event: RunEvent) -> None:
        if isinstance(event, RunFinished):
            self._finish(event)
        elif isinstance(event, WindowScored | RegionDone | RegionFailed):
            self._queue.append(event)
            self._deliver_soon()
        elif not isinstance(event, RunStarted):
            log.debug("unexpected event %r", event)

    def _deliver(self, final: bool = False) -> None:
        """Hand the queued region and window events on, in order, then move the progress bar (see ``BAR_S``)."""
        events, self._queue = self._queue, []
        self._size_bar()  # (the first region came before the bar's turn)
        for event in events:
            if isinstance(event, WindowScored):
                self.window.emit(event)
            elif isinstance(event, RegionDone | RegionFailed):
                self.region.emit(event)
                self._last_region = event
        # last: napari's progress bar runs a nested event loop on update, which may deliver the next items
        bar, last, now = self.progress, self._last_region, time.perf_counter()
        if last is not None and bar is not None and (final or now - self._bar_moved >= BAR_S):
            step = min(last.n_done - self._done_start, bar.total) - bar.n
            if step > 0:
                self._bar_moved = now
                bar.update(step)

    def _finish(self, end: RunFinished) -> None:
        self._deliver_soon.cancel()
        self._deliver(final=True)  # every region reaches the dock (and the bar its count) before the end does
        self._worker, self._gen = None, None
        self._set_state("idle")
        self.ended.emit(end)

    def _on_stream_error(self, err: BaseException) -> None:  # events() catches everything; this is a safety net
        log.error("the run worker failed", exc_info=err)
        self._finish(RunFinished("failed", _short_summary(self.run), err))

    def _on_aborted(self) -> None:
        """The worker was stopped from outside (napari's task status / Activity dock): end the run cleanly."""
        run, gen = self.run, self._gen
        if run is not None:
            run.cancel()
        if gen is not None and hasattr(gen, "close"):
            try:
                gen.close()  # closes the engine's iterator: its read-ahead threads stop
            except Exception:
                log.debug("closing the stream failed", exc_info=True)
        self._finish(RunFinished("cancelled", _short_summary(run)))

    def detach(self, *_args: object) -> None:
        """The dock's widgets are gone (viewer closed): stop the run and stop calling into them.

        A run still yields for up to one batch after Cancel; without this its events reach deleted Qt widgets.
        """
        self.cancel()
        for signal in (self.prepared, self.region, self.window, self.ended, self.failed, self.state_changed):
            signal.disconnect()

    def wait_idle_workers(self) -> list:
        """Workers still alive (tests and shutdown use it)."""
        return [w for w in (self._prep_worker, self._worker) if w is not None]


def _short_summary(run: Any) -> RunSummary:
    """The summary of a run that ended without the driver's finish (cancelled before it started, aborted)."""
    if run is None:
        return RunSummary("", 0, 0, 0, 0, 0, True, 0.0, "", "")
    return RunSummary(str(run.store.path), run.n_total, run.n_done, run.n_done - run.n_done_at_start,
                      len(run.plan.skipped), run.n_failed, True, 0.0, str(run.device), run.options.precision)


def _relay(gen: Iterator[RunEvent]) -> Iterator[RunEvent]:
    """A generator function for ``create_worker`` around a generator object the runner keeps (to close it)."""
    yield from gen
