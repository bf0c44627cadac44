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
from .plan import Plan, Region
from .reader import Prefetcher
from .store import ResultStore

if TYPE_CHECKING:
    from ..io import LargeImage
    from ..model import XTModel

log = logging.getLogger(__name__)

__all__ = ["InferenceRun", "RegionResult", "RunOptions", "autocast_dtype", "resolve_device"]


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
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise DeviceUnavailable("fp16 precision needs a GPU; use bf16 or fp32 on the CPU", str(device))
        return torch.float16
    raise DeviceUnavailable(f"precision must be fp32, bf16 or fp16, not {precision!r}")


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


class InferenceRun:
    """One run of ``model`` over ``plan`` on ``image``, writing ``store``; iterate it to make progress."""

    def __init__(self, model: XTModel, image: LargeImage, plan: Plan, store: ResultStore,
                 options: RunOptions | None = None):
        self.model, self.image, self.plan, self.store = model, image, plan, store
        self.options = options or RunOptions()
        self.device = resolve_device(self.options.device)
        self.amp = autocast_dtype(self.options.precision, self.device)
        self.normaliser = Normaliser.from_config(model.config, image)
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
        while not self.cancelled:
            window = self._next_window()
            if window is None:
                break
            yield from self._run_window([self.plan.regions[i] for i in self.plan.windows[window]])

    def _run_window(self, regions: list[Region]) -> Iterator[RegionResult]:
        """Stream one context window. Regions already done are re-encoded for the context but not rewritten."""
        memory = None
        reader = Prefetcher(self.image, self.plan, regions, self.options.prefetch, self.options.read_workers)
        batch: list[tuple[Region, np.ndarray]] = []
        stream = iter(reader)
        try:
            for region, pixels in stream:
                if isinstance(pixels, BaseException):
                    self.n_failed += 1
                    log.error("region %d at %s could not be read: %s", region.id, region.box, pixels)
                    yield self._result(region, None, {}, 0.0, error=f"region {region.id} at {region.box}: {pixels}")
                    continue
                batch.append((region, pixels))
                if len(batch) >= (1 if self._first_batch else self.batch_size):
                    self._first_batch = False
                    memory, results = self._run_batch(batch, memory)
                    batch = []
                    yield from results
                    if self.cancelled:
                        return
            if batch:
                memory, results = self._run_batch(batch, memory)
                yield from results
            if memory is not None and "classification" in self.model.heads:
                scores = self._classify(memory)
                self.store.set_window_scores(regions[0].window, scores)
                yield self._result(regions[-1], None, {}, 0.0, window_scores=scores, count=False)
        finally:
            reader.close()

    def _run_batch(self, batch, memory):
        """Encode a batch; on out-of-memory halve the batch and retry the same regions (never skip them)."""
        results: list[RegionResult] = []
        i = 0
        while i < len(batch):
            chunk = batch[i : i + self.batch_size]
            try:
                memory, done = self._forward_batch(chunk, memory)
            except RuntimeError as err:
                if not _is_oom(err) or len(chunk) == 1:
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.batch_size = max(1, len(chunk) // 2)
                log.warning("out of memory: retrying the same regions with batch size %d", self.batch_size)
                continue
            results += done
            i += len(chunk)
        return memory, results

    @torch.inference_mode()
    def _forward_batch(self, batch, memory):
        t0 = time.perf_counter()
        x = torch.from_numpy(np.stack([self.normaliser(p) for _, p in batch])).to(self.device)
        x = x.permute(0, 3, 1, 2).contiguous()
        regions = [r for r, _ in batch]
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            if memory is None:
                memory = self.model.init_memory(1, device=self.device)
            outputs, memory = self.model.stream_regions(x, [r.window_pos for r in regions], memory)
        per_region = (time.perf_counter() - t0) / len(batch)
        results = []
        for i, region in enumerate(regions):
            labels, probs = self._labels(outputs, i, region)
            dets = self._detections(outputs, i, region)
            if not self.store.is_done(region.id):
                self.store.write_region(region.id, region.core, labels, probabilities=probs, detections=dets)
                self.n_done += 1
            results.append(self._result(region, labels, dets, per_region))
        return memory, results

    def _labels(self, outputs, i, region):
        seg = outputs.get("segmentation")
        if seg is None:
            return None, None
        cy0, cx0 = region.core[0] - region.box[0], region.core[1] - region.box[1]
        cy1, cx1 = region.core[2] - region.box[0], region.core[3] - region.box[1]
        logits = seg[i, :, cy0:cy1, cx0:cx1].float()
        dtype = np.uint8 if logits.shape[0] <= 256 else np.uint16
        labels = logits.argmax(0).cpu().numpy().astype(dtype)
        probs = None
        if self.options.probabilities:
            probs = (logits.softmax(0) * 255).round().byte().cpu().numpy()
        return labels, probs

    def _detections(self, outputs, i, region) -> dict[str, np.ndarray]:
        if "detection" not in outputs:
            return {}
        from ..model.heads import decode_detections

        dets = decode_detections(
            outputs["detection"], i, score_threshold=self.options.score_threshold,
            max_detections=self.options.max_detections_per_region,
        )
        y = dets["y"] + region.box[0]
        x = dets["x"] + region.box[1]
        y0, x0, y1, x1 = region.core
        inside = (y >= y0) & (y < y1) & (x >= x0) & (x < x1)  # each object belongs to the region owning its centre
        f = self.plan.downsample_to_level0
        return {
            "y": (y[inside] * f).astype(np.float32),
            "x": (x[inside] * f).astype(np.float32),
            "h": (dets["h"][inside] * f).astype(np.float32),
            "w": (dets["w"][inside] * f).astype(np.float32),
            "cls": dets["cls"][inside].astype(np.int32),
            "score": dets["score"][inside].astype(np.float32),
        }

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
