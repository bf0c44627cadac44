"""Stream an xT model over a plan: read ahead, encode regions in batches, step the context memory, write the store.

The run is an iterator of :class:`RegionResult` so a UI shows each region the moment it is stored; ``cancel()`` is
honoured between batches. Memory is bounded by construction: a few regions in flight, the context encoder's fixed
memory, and nothing else (results go straight to the on-disk store).

Threads (``pipeline=True``, the default): the compute (read-ahead consumer, normalise, model) runs on a thread of its
own, post-processing and store writes on two more behind bounded queues (:mod:`.pipeline`), and the iterator the
caller holds only hands over results: each one the moment its region is on disk, not when the caller's thread next
gets round to it. ``pipeline=False`` runs every stage on the caller's thread: the reference path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..store import ResultStore
from .allocator import reuse_freed_memory
from .compiling import compile_region_encoder
from .device import autocast_dtype, is_oom, resolve_device
from .lockstep import Cohort, Lockstep, take_companions
from .normalise import Normaliser
from .options import RunOptions, score_threshold_for
from .pipeline import Pipeline, StoreWriteError
from .plan import Plan, Region
from .postprocess import RegionOutput, region_outputs
from .priority import VIEWER_NICE, lower_this_thread
from .reader import Prefetcher

if TYPE_CHECKING:
    from ..io import LargeImage
    from ..model import XTModel

log = logging.getLogger(__name__)

__all__ = ["InferenceRun", "RegionResult", "RunOptions", "StoreWriteError", "autocast_dtype", "resolve_device"]


@dataclass
class RegionResult:
    """What a UI needs to show one finished region; small plain numpy, no torch."""

    region_id: int
    core: tuple[int, int, int, int]  # analysis-level px
    labels: np.ndarray | None  # core-sized class map (uint8/uint16), None without a segmentation head
    detections: dict[str, np.ndarray] = field(default_factory=dict)  # level-0 px
    window_scores: np.ndarray | None = None  # set on the last region of a window (classification head)
    seconds: float = 0.0
    n_done: int = 0
    n_total: int = 0
    error: str | None = None


@dataclass
class _Job:
    """A batch on its way from the model to the store (or a read failure / window scores, kept in stream order)."""

    regions: list[Region]
    outputs: dict | None = None  # model outputs (device tensors) until post-processed
    payload: list[RegionOutput] | None = None
    seconds: float = 0.0  # compute seconds per region
    error: str | None = None
    window_scores: np.ndarray | None = None


class InferenceRun:
    """One run of ``model`` over ``plan`` on ``image``, writing ``store``; iterate it to make progress.

    ``device`` and ``normaliser``: what the caller already resolved for these options, model and image (the run
    driver does, to reject a request before its store exists); resolved here when not given."""

    def __init__(self, model: XTModel, image: LargeImage, plan: Plan, store: ResultStore,
                 options: RunOptions | None = None, pipeline: bool = True, queue_depth: int = 2,
                 device: torch.device | None = None, normaliser: Normaliser | None = None):
        self.model, self.image, self.plan, self.store = model, image, plan, store
        self.options = options or RunOptions()
        self.device = device if device is not None else resolve_device(self.options.device)
        self.amp = autocast_dtype(self.options.precision, self.device)
        self.normaliser = normaliser if normaliser is not None else Normaliser.from_config(model.config, image)
        self.score_threshold = score_threshold_for(self.options.score_threshold, model.config.score_threshold)
        #: Compute, post-process and write on threads of their own (False: everything on the caller's thread, the
        #: reference path the tests compare against); ``queue_depth`` batches may wait before each of the two
        #: stages behind the model. Engine knobs, not user options: they change speed, never results.
        self.pipeline, self.queue_depth = bool(pipeline), max(1, int(queue_depth))
        #: The run's first step holds one region and the compute waits for it to be on disk: the viewer's first
        #: overlay costs one region's work (``RunOptions.first_region_alone``, the dock's choice). False: a full
        #: first batch (throughput: no extra forward, no wait). The reference path honours it too.
        self.quick_first = bool(self.options.first_region_alone)
        #: How much nicer than the caller the run's threads are (``RunOptions.low_priority``; threaded path only:
        #: the reference path runs on the caller's thread, whose priority is not the run's to change).
        self._nice = VIEWER_NICE if self.options.low_priority else 0
        self._cancel = threading.Event()
        self._stop = threading.Event()  # the caller stopped iterating: the compute thread ends
        self._lock = threading.Lock()
        self._pending: list[int] = list(plan.run_order)  # window ids still to run: the run's queue, not the plan's
        #: Regions encoded together, spread over ``window_batch`` windows in lockstep (both shrink on out-of-memory).
        self.batch_size = max(1, self.options.batch_size)
        self.window_batch = max(1, self.options.window_batch) if plan.context == "window" else 1
        self.n_total = plan.n_planned
        self.n_done = sum(1 for w in plan.windows for i in w if store.is_done(i))
        self.n_done_at_start = self.n_done
        #: Windows whose class scores are in the store (classification models). A cancel can land between a
        #: window's last region and its score, so "all regions done" alone does not finish a window.
        self._scored: set[int] | None = set(store.window_scores()) if "classification" in model.heads else None
        self.n_failed = 0
        self.started = time.perf_counter()
        self._cohorts: deque[Cohort] = deque()  # formed by the reader's feed, consumed by the compute in order
        self._pipe: Pipeline | None = None
        self.compiled: bool = False  # RunOptions.compile: done
        self.compile_note: str | None = None  # or why not (one sentence)
        #: Busy seconds per stage (benchmarks): compute-thread stages plus the pipeline threads' post and write.
        self.stage_seconds: dict[str, float] = {"read wait": 0.0, "normalise": 0.0, "model": 0.0, "post": 0.0,
                                                "write": 0.0}

    # -- control (any thread) --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop after the batch being computed; jobs still queued behind it are dropped (not done, not reported)."""
        self._cancel.set()
        if self._pipe is not None:
            self._pipe.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def _stopped(self) -> bool:
        return self._cancel.is_set() or self._stop.is_set()

    def prioritise(self, point: tuple[float, float]) -> None:
        """Run the pending windows nearest ``point`` (level-0 (y, x)) next; the plan itself never changes."""
        with self._lock:
            self._pending = self.plan.order_near(point, self._pending)

    def chunk(self) -> int:
        """Regions of each window per step."""
        return max(1, self.batch_size // self.window_batch)

    # -- the stream --------------------------------------------------------------------------------------------
    def _has_work(self, window: int) -> bool:
        """Regions not yet in the store, or (classification) no class scores yet: the window runs again, its done
        regions re-encoded for the context only."""
        if self._scored is not None and window not in self._scored:
            return True
        return not all(self.store.is_done(i) for i in self.plan.windows[window])

    def _next_window(self) -> int | None:
        """The id of the next window with work left (regions not yet in the store), or None when all are done."""
        with self._lock:
            while self._pending:
                window = self._pending.pop(0)
                if self._has_work(window):
                    return window
            return None

    def _next_windows(self) -> list[int]:
        """The next cohort: the next window with work left, and up to ``window_batch - 1`` companions."""
        leader = self._next_window()
        if leader is None:
            return []
        with self._lock:
            return [leader, *take_companions(self._pending, leader, self._has_work,
                                             lambda w: len(self.plan.windows[w]), self.window_batch - 1)]

    def _feed(self) -> Iterator[Region]:
        """The reader's regions, cohort after cohort; each cohort is formed (from the queue as it is then: focus
        changes apply) when the reader first needs one of its regions, and queued for the compute."""
        first = self.quick_first
        while not self._stopped():
            windows = self._next_windows()
            if not windows:
                return
            cohort = Cohort.of(self.plan, windows, 1 if first else self.chunk(), self.chunk())
            self._cohorts.append(cohort)
            first = False
            yield from cohort.read_order()

    def __iter__(self) -> Iterator[RegionResult]:
        self.model.eval().to(self.device)
        if self.device.type == "cuda":  # GPU habits; never taken on the CPU, so CI never depends on them
            torch.backends.cudnn.benchmark = True  # every batch has the same shape: pick the fastest kernels once
            self.model.to(memory_format=torch.channels_last)  # inputs arrive NHWC (Normaliser.batch)
        if self.options.compile and not self.compiled:
            self._compile()
        pipe = self._pipe = Pipeline(self._post, self._write, self.queue_depth, threaded=self.pipeline,
                                     nice=self._nice)
        if self._cancel.is_set():
            pipe.cancel()
        try:
            with reuse_freed_memory(self.device.type == "cpu"):  # CPU activations reused, not re-faulted per batch
                if self.pipeline:
                    yield from self._threaded(pipe)
                else:
                    yield from self._inline(pipe)
        finally:
            pipe.close()
            for stage, seconds in pipe.busy.items():
                self.stage_seconds[stage] += seconds

    def _compile(self) -> None:
        """``RunOptions.compile``: compile and warm up before any region is read (the first overlay is not delayed
        by compiling on the first batch); where it cannot work, the run goes on uncompiled and says why."""
        shapes = [1] if self.batch_size == 1 else [1, self.batch_size]  # dynamic batch; torch specialises 1
        seconds, problem = compile_region_encoder(self.model, self.device, shapes, self.amp)
        self.stage_seconds["compile"] = seconds
        self.compiled, self.compile_note = problem is None, problem
        if problem:
            log.warning("running without torch.compile: %s", problem)
        else:
            log.info("region encoder compiled and warmed up in %.1f s", seconds)

    def _inline(self, pipe: Pipeline) -> Iterator[RegionResult]:
        try:
            for _ in self._compute(pipe):
                yield from pipe.ready()
            yield from pipe.finish()
        except Exception:
            # the model (or a read) failed: what is already stored is reported before the error, so the viewer and
            # the progress count agree with the store
            pipe.close()
            yield from pipe.ready()
            raise

    def _threaded(self, pipe: Pipeline) -> Iterator[RegionResult]:
        errors: list[BaseException] = []

        def compute() -> None:
            lower_this_thread(self._nice)  # before torch's OpenMP team and the reader pool are made: they inherit it
            try:
                for _ in self._compute(pipe):
                    pass
            except BaseException as err:  # raised in the caller's thread once the stored results are handed over
                errors.append(err)
            finally:
                pipe.close()  # writes what is queued (unless cancelled or failed), then ends pipe.results()

        thread = threading.Thread(target=compute, name="napari-xt-compute", daemon=True)
        thread.start()
        try:
            yield from pipe.results()
            thread.join()
            if errors:
                raise errors[0]
            pipe.check()
        finally:
            if thread.is_alive():  # the caller stopped early: stop the compute and drop what is queued
                self._stop.set()
                pipe.cancel()
                thread.join()

    def _compute(self, pipe: Pipeline) -> Iterator[None]:
        """Read, normalise and run the model cohort by cohort; yields after every job handed to ``pipe``."""
        reader = Prefetcher(self.image, self.plan, self._feed(), self.options.prefetch, self.options.read_workers)
        reader.start()  # forms the first cohort
        stream = self._timed(iter(reader))
        first = [self.quick_first]

        def submit(job: _Job) -> None:
            pipe.submit(job)
            if first[0]:  # the viewer's first overlay: one region's work, not the next batch's too
                first[0] = False
                pipe.wait_written()

        try:
            while self._cohorts and not self._stopped():
                cohort = self._cohorts.popleft()
                yield from Lockstep(
                    cohort, stream, forward=lambda items, memory, n: self._forward_batch(items, memory),
                    select=self.model.select_memory, finish=lambda last, row: self._finish_window(last, row, pipe),
                    failed=lambda region, err: self._read_failed(region, err, pipe), submit=submit, is_oom=is_oom,
                    shrink=self._shrink, chunk=self.chunk, stopped=self._stopped, first_step=first[0],
                ).run()
        finally:
            reader.close()

    def _timed(self, stream: Iterator) -> Iterator:
        while True:
            t0 = time.perf_counter()
            item = next(stream, None)
            self.stage_seconds["read wait"] += time.perf_counter() - t0
            if item is None:
                return
            yield item

    def _read_failed(self, region: Region, err: BaseException, pipe: Pipeline) -> None:
        self.n_failed += 1
        log.error("region %d at %s could not be read: %s", region.id, region.box, err)
        pipe.submit(_Job([region], error=f"region {region.id} at {region.box}: {err}"))

    def _finish_window(self, last: Region, memory_row, pipe: Pipeline) -> None:
        if memory_row is not None and "classification" in self.model.heads and not self._stopped():
            pipe.submit(_Job([last], window_scores=self._classify(memory_row)))

    def _shrink(self, k: int, n_windows: int) -> bool:
        """After out-of-memory on ``k`` regions of ``n_windows`` windows: a smaller step next (False: none left)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if k > 1:
            self.batch_size = max(1, (k // 2) * self.window_batch)
        elif n_windows > 1:
            self.window_batch = max(1, n_windows // 2)
            self.batch_size = max(1, self.batch_size // 2)
        else:
            return False
        log.warning("out of memory: retrying the same regions with batch size %d over %d window(s)",
                    self.batch_size, self.window_batch)
        return True

    @torch.inference_mode()
    def _forward_batch(self, batch, memory):
        """``batch``: (region, pixels) of one or more windows, window-major, the same count from each window."""
        t0 = time.perf_counter()
        x = self.normaliser.batch([p for _, p in batch], self.device, channels_last=self.device.type == "cuda")
        t1 = time.perf_counter()
        regions = [r for r, _ in batch]
        windows = len({r.window for r in regions})
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if memory is None:
                memory = self.model.init_memory(windows, device=self.device)
            outputs, memory = self.model.stream_regions(x, [r.window_pos for r in regions], memory, windows=windows)
        t2 = time.perf_counter()
        self.stage_seconds["normalise"] += t1 - t0
        self.stage_seconds["model"] += t2 - t1
        return memory, _Job(regions, outputs=outputs, seconds=(t2 - t0) / len(batch))

    # -- the stages behind the model (pipeline threads, or inline with pipeline=False) -------------------------
    def _post(self, job: _Job) -> _Job:
        if job.outputs is not None:
            job.payload = region_outputs(job.outputs, job.regions, self.plan, self.options.probabilities,
                                         self.score_threshold, self.options.max_detections_per_region)
            job.outputs = None  # frees the logits (device memory) as soon as they are reduced
        return job

    def _write(self, job: _Job) -> list[RegionResult]:
        """Store a batch; the results exist only once their regions are on disk and marked done."""
        if job.error is not None:
            return [self._result(job.regions[0], None, {}, 0.0, error=job.error)]
        if job.window_scores is not None:
            region = job.regions[0]
            self._guard_write(None, self.store.set_window_scores, region.window, job.window_scores)
            if self._scored is not None:
                self._scored.add(region.window)
            return [self._result(region, None, {}, 0.0, window_scores=job.window_scores, count=False)]
        results = []
        for region, out in zip(job.regions, job.payload or []):
            if not self.store.is_done(region.id):
                self._guard_write(region.id, self.store.write_region, region.id, region.core, out.labels,
                                  probabilities=out.probabilities, detections=out.detections)
                self.n_done += 1
            results.append(self._result(region, out.labels, out.detections, job.seconds))
        return results

    def _guard_write(self, region_id: int | None, write, *args, **kwargs) -> None:
        try:
            write(*args, **kwargs)
        except OSError as err:
            raise StoreWriteError(self.store.path, region_id, err) from err

    @torch.inference_mode()
    def _classify(self, memory) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            logits = self.model.classify(memory)
        return logits.float().softmax(-1)[0].cpu().numpy()

    def _result(self, region, labels, dets, seconds, error=None, window_scores=None, count=True) -> RegionResult:
        return RegionResult(region.id, region.core, labels, dets, window_scores, seconds, self.n_done,
                            self.n_total, error)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
