"""Stream an xT model over a plan: read ahead, encode regions in batches, step the context memory, write the store.

The run is an iterator of :class:`RegionResult` so a UI shows each region the moment it is stored; ``cancel()`` is
honoured between batches. Memory is bounded by construction: a few regions in flight, the context encoder's fixed
memory, and nothing else (results go straight to the on-disk store).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import DeviceUnavailable
from .normalise import Normaliser
from .options import RunOptions
from .pipeline import Pipeline, StoreWriteError
from .plan import Plan, Region
from .postprocess import RegionOutput, region_outputs
from .reader import Prefetcher
from .store import ResultStore

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


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable explicit device is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available on this machine", name)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but MPS is not available on this machine", name)
    return dev


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision name on ``device`` (None: plain fp32).

    ``auto`` is bf16 on a CUDA device that supports it (the GPU default to aim for: half the memory traffic, same
    range as fp32) and fp32 everywhere else, so CPU results never change with it.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise DeviceUnavailable("fp16 precision needs a GPU; use bf16 or fp32 on the CPU", str(device))
        return torch.float16
    raise DeviceUnavailable(f"precision must be fp32, bf16, fp16 or auto, not {precision!r}")


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class InferenceRun:
    """One run of ``model`` over ``plan`` on ``image``, writing ``store``; iterate it to make progress."""

    def __init__(self, model: XTModel, image: LargeImage, plan: Plan, store: ResultStore,
                 options: RunOptions | None = None, pipeline: bool = True, queue_depth: int = 2):
        self.model, self.image, self.plan, self.store = model, image, plan, store
        self.options = options or RunOptions()
        self.device = resolve_device(self.options.device)
        self.amp = autocast_dtype(self.options.precision, self.device)
        self.normaliser = Normaliser.from_config(model.config, image)
        #: Post-process and write on their own threads (False: everything on the caller's thread, the reference
        #: path the tests compare against); ``queue_depth`` batches may wait before each of those two stages.
        #: Engine knobs, not user options: they change speed, never results.
        self.pipeline, self.queue_depth = bool(pipeline), max(1, int(queue_depth))
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[int] = list(plan.run_order)  # window ids still to run: the run's queue, not the plan's
        self.batch_size = max(1, self.options.batch_size)
        self.n_total = plan.n_planned
        self.n_done = sum(1 for w in plan.windows for i in w if store.is_done(i))
        self.n_done_at_start = self.n_done
        self.n_failed = 0
        self.started = time.perf_counter()
        #: The first batch of a run holds one region, so the first result (the viewer's first overlay) arrives
        #: after one region's work, not a whole batch's; causal context makes the outputs identical.
        self._first_batch = True
        #: Busy seconds per stage (benchmarks): compute-thread stages plus the pipeline threads' post and write.
        self.stage_seconds: dict[str, float] = {"read wait": 0.0, "normalise": 0.0, "model": 0.0, "post": 0.0,
                                                "write": 0.0}

    # -- control (any thread) --------------------------------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def prioritise(self, point: tuple[float, float]) -> None:
        """Run the pending windows nearest ``point`` (level-0 (y, x)) next; the plan itself never changes."""
        with self._lock:
            self._pending = self.plan.order_near(point, self._pending)

    # -- the stream --------------------------------------------------------------------------------------------
    def _next_window(self) -> int | None:
        """The id of the next window with work left (regions not yet in the store), or None when all are done."""
        with self._lock:
            while self._pending:
                window = self._pending.pop(0)
                if not all(self.store.is_done(i) for i in self.plan.windows[window]):
                    return window
            return None

    def __iter__(self) -> Iterator[RegionResult]:
        self.model.eval().to(self.device)
        if self.device.type == "cuda":  # GPU habits; never taken on the CPU, so CI never depends on them
            torch.backends.cudnn.benchmark = True  # every batch has the same shape: pick the fastest kernels once
            self.model.to(memory_format=torch.channels_last)  # inputs arrive NHWC (Normaliser.batch)
        while not self.cancelled:
            window = self._next_window()
            if window is None:
                break
            yield from self._run_window([self.plan.regions[i] for i in self.plan.windows[window]])

    def _run_window(self, regions: list[Region]) -> Iterator[RegionResult]:
        """Stream one context window. Regions already done are re-encoded for the context but not rewritten.

        The compute happens here (the caller's thread); post-processing and store writes run behind it in
        :class:`Pipeline` (``RunOptions.pipeline``), and a region's result is yielded once its data are on disk.
        """
        memory = None
        reader = Prefetcher(self.image, self.plan, regions, self.options.prefetch, self.options.read_workers)
        pipe = Pipeline(self._post, self._write, self.queue_depth, threaded=self.pipeline)
        batch: list[tuple[Region, np.ndarray]] = []
        stream = iter(reader)
        try:
            while True:
                t0 = time.perf_counter()
                item = next(stream, None)
                self.stage_seconds["read wait"] += time.perf_counter() - t0
                if item is None:
                    break
                region, pixels = item
                if isinstance(pixels, BaseException):
                    self.n_failed += 1
                    log.error("region %d at %s could not be read: %s", region.id, region.box, pixels)
                    pipe.submit(_Job([region], error=f"region {region.id} at {region.box}: {pixels}"))
                    continue
                batch.append((region, pixels))
                if len(batch) >= (1 if self._first_batch else self.batch_size):
                    first, self._first_batch = self._first_batch, False
                    memory = self._run_batch(batch, memory, pipe)
                    batch = []
                    yield from (pipe.wait_first() if first else pipe.ready())
                    if self.cancelled:
                        break
            if batch and not self.cancelled:
                memory = self._run_batch(batch, memory, pipe)
            if memory is not None and "classification" in self.model.heads and not self.cancelled:
                pipe.submit(_Job([regions[-1]], window_scores=self._classify(memory)))
            yield from pipe.finish()
        except Exception:
            # the model (or a read) failed: what the writer has already stored is reported before the error, so the
            # viewer and the progress count agree with the store
            pipe.close()
            yield from pipe.ready()
            raise
        finally:
            reader.close()
            pipe.close()
            for stage, seconds in pipe.busy.items():
                self.stage_seconds[stage] += seconds

    def _run_batch(self, batch, memory, pipe: Pipeline):
        """Encode a batch; on out-of-memory halve the batch and retry the same regions (never skip them)."""
        i = 0
        while i < len(batch):
            chunk = batch[i : i + self.batch_size]
            try:
                memory, job = self._forward_batch(chunk, memory)
            except RuntimeError as err:
                if not _is_oom(err) or len(chunk) == 1:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.batch_size = max(1, len(chunk) // 2)
                log.warning("out of memory: retrying the same regions with batch size %d", self.batch_size)
                continue
            pipe.submit(job)
            i += len(chunk)
        return memory

    @torch.inference_mode()
    def _forward_batch(self, batch, memory):
        t0 = time.perf_counter()
        x = self.normaliser.batch([p for _, p in batch], self.device, channels_last=self.device.type == "cuda")
        t1 = time.perf_counter()
        regions = [r for r, _ in batch]
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if memory is None:
                memory = self.model.init_memory(1, device=self.device)
            outputs, memory = self.model.stream_regions(x, [r.window_pos for r in regions], memory)
        t2 = time.perf_counter()
        self.stage_seconds["normalise"] += t1 - t0
        self.stage_seconds["model"] += t2 - t1
        return memory, _Job(regions, outputs=outputs, seconds=(t2 - t0) / len(batch))

    # -- the stages behind the model (pipeline threads, or inline with pipeline=False) -------------------------
    def _post(self, job: _Job) -> _Job:
        if job.outputs is not None:
            job.payload = region_outputs(job.outputs, job.regions, self.plan, self.options.probabilities,
                                         self.options.score_threshold, self.options.max_detections_per_region)
            job.outputs = None  # frees the logits (device memory) as soon as they are reduced
        return job

    def _write(self, job: _Job) -> list[RegionResult]:
        """Store a batch; the results exist only once their regions are on disk and marked done."""
        if job.error is not None:
            return [self._result(job.regions[0], None, {}, 0.0, error=job.error)]
        if job.window_scores is not None:
            region = job.regions[0]
            self._guard_write(None, self.store.set_window_scores, region.window, job.window_scores)
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
