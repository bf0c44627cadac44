"""How long a region encoder will take on an image on this device: one timed batch, extrapolated (not a guess).

Foundation-model encoders differ by 100x in cost (tiny: ~20 ms per 512 px region on a CPU; a ViT-H: tens of
seconds), and users pick them from a list. The dock warns before a run that would take hours: it builds the encoder
(random weights: the cost does not depend on their values, and no download is needed), runs one sub-region to warm
up, times a batch of a region's sub-regions on the chosen device and precision several times, and multiplies the
median by the sub-regions per region and the regions the plan holds for this image (the driver's plan rule,
foreground mask included). The estimate covers the region encoder only (the part that grows with the encoder; the
rest of the pipeline is measured in docs/engine.md).

The batches are timed with the torch thread count of a dock run (one core left to the viewer, ``app/threads.py``):
with every core in torch's pool, a loaded 2-core machine made a 1 ms batch take 860 ms. One timing is not an
estimate either: on a busy machine the same encoder was timed at 2.3 s and, a minute later, 0.029 s
per region (issue 23). So :func:`measure` times at least ``MIN_TIMINGS`` batches and keeps timing (up to
``MAX_TIMINGS``, within ``BUDGET_S``) while they disagree by more than ``OUTLIER`` x; the median is kept. An estimate
more than ``OUTLIER`` x off the last one for the same encoder, size and device is measured once more, and the faster
round is kept: other work on the machine only ever adds time to a timing. The note says "about" and, when the
timings still disagreed, that the machine was busy.

torch-free at import, like the rest of ``app/``: the dock runs :func:`estimate` in a worker thread.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._compat import keep_triton_out_without_cuda
from . import threads

if TYPE_CHECKING:
    from .request import PredictRequest

#: An estimate at or above this many seconds is shown as a warning.
SLOW_S = 600.0
#: Sub-regions timed together (at most a region's worth), bounded for a ViT-H on a CPU.
TIMED_BATCH = 4
#: Timings of a batch: at least MIN_TIMINGS, more (up to MAX_TIMINGS) while the slowest is over OUTLIER x the fastest;
#: no new timing starts once BUDGET_S have been spent (a ViT-H on a CPU gets one or two, and says so).
MIN_TIMINGS, MAX_TIMINGS, OUTLIER, BUDGET_S = 3, 9, 2.0, 3.0
#: Options that do not change an encoder's cost (weights files, memory chunking) or are set here.
_NOT_COST = ("weights", "pretrained", "sub_batch", "img_size")
#: An encoder whose float32 weights would take more than this share of the memory free now is not built just to time
#: it on the CPU (a ViT-g is 4.5 GB): merely browsing the dock's encoder list must not push a laptop into swap.
MEMORY_SHARE = 0.5


class TooLargeToTime(ValueError):
    """Timing this encoder here would need more memory than is free; the dock shows the sentence, nothing is built."""


def _free_bytes() -> int | None:
    """Physical memory free now (POSIX), None where the system cannot say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _parameters_without_memory(build: Any) -> int | None:
    """Parameters of the module ``build()`` makes, built on torch's meta device (shapes only, no memory); None when
    a builder cannot be built that way."""
    import torch

    try:
        with torch.device("meta"):
            return sum(p.numel() for p in build().parameters())
    except Exception:  # a builder that touches real data at init: time it the normal way
        return None


@dataclass(frozen=True)
class SpeedEstimate:
    """``seconds_per_region`` of ``encoder`` on ``device``, measured; ``regions`` in the image's plan."""

    encoder: str
    device: str  # where it was timed, in words: "CPU", "GPU (cuda:0)", "MPS"
    regions: int
    sub_regions: int  # per region
    sub_region_size: int
    seconds_per_region: float
    timings: int = 1  # batches timed for the figure
    spread: float = 1.0  # slowest / fastest of them (and of the rounds): above OUTLIER the machine was busy

    @property
    def total_s(self) -> float:
        return self.seconds_per_region * self.regions

    @property
    def slow(self) -> bool:
        return self.total_s >= SLOW_S

    def note(self) -> str:
        """'about 12 min for this image on CPU (320 regions of 16 sub-regions, about 2.2 s each, median of 5
        timings; region encoder only)'."""
        each = duration(self.seconds_per_region, about=True)
        how = f"median of {self.timings} timings" if self.timings > 1 else "timed once: a slow encoder"
        busy = f"; timings varied {self.spread:.0f}x: the machine is busy" if self.spread > OUTLIER else ""
        text = (f"{duration(self.total_s, about=True)} for this image on {self.device} ({self.regions} regions of "
                f"{self.sub_regions} sub-regions, {each} each, {how}{busy}; region encoder only)")
        return f"slow: {text}" if self.slow else text


@dataclass(frozen=True)
class Timing:
    """What :func:`measure` found: the ``median`` of ``n`` timings (s), and their ``spread`` (slowest / fastest)."""

    median: float
    n: int
    spread: float


def _spread(times: list[float]) -> float:
    return max(times) / max(min(times), 1e-12)


def measure(run: Callable[[], Any], clock: Callable[[], float] = time.perf_counter,
            budget_s: float = BUDGET_S) -> Timing:
    """Time ``run()`` at least ``MIN_TIMINGS`` times, and again while the timings disagree by more than ``OUTLIER``
    x (up to ``MAX_TIMINGS``); none starts once ``budget_s`` are spent. The median is robust to a timing that other
    work on the machine stretched; ``clock`` is injectable so the rule can be tested with known timings."""
    times: list[float] = []
    while len(times) < MAX_TIMINGS:
        t0 = clock()
        run()
        times.append(clock() - t0)
        if len(times) >= MIN_TIMINGS and _spread(times) <= OUTLIER:
            break
        if sum(times) >= budget_s:
            break
    ordered = sorted(times)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return Timing(median, len(times), _spread(times))


#: The last figure (s per batch) measured for an (encoder, options, channels, size, batch, device, precision) key:
#: an estimate far off it is measured once more (see the module docstring).
_LAST: dict[tuple, float] = {}


def measure_again_if_off(key: tuple, run: Callable[[], Any], clock: Callable[[], float] = time.perf_counter,
                         budget_s: float = BUDGET_S) -> Timing:
    """:func:`measure`, and when its median is more than ``OUTLIER`` x off the last figure for ``key``, a second
    round; the faster round is kept (load only adds time), with the rounds' disagreement in its spread."""
    first = measure(run, clock, budget_s)
    last = _LAST.get(key)
    timing = first
    if last is not None and _spread([first.median, last]) > OUTLIER:
        second = measure(run, clock, budget_s)
        best = min(first, second, key=lambda t: t.median)
        rounds = _spread([first.median, second.median])
        timing = Timing(best.median, first.n + second.n, max(best.spread, rounds))
    _LAST[key] = timing.median
    return timing


def duration(seconds: float, about: bool = False) -> str:
    """'0.4 s', '35 s', 'about 12 min', 'about 3.5 h'."""
    prefix = "about " if about else ""
    if seconds < 10:
        return f"{prefix}{seconds:.2g} s"
    if seconds < 90:
        return f"{prefix}{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{prefix}{seconds / 60:.0f} min"
    return f"{prefix}{seconds / 3600:.1f} h"


def time_encoder(encoder: str, *, options: dict[str, Any] | None = None, in_chans: int = 3,
                 sub_region_size: int = 256, batch: int = TIMED_BATCH, device: str = "cpu",
                 precision: str = "auto") -> tuple[float, list[int], str]:
    """(seconds per sub-region, the encoder's strides, where it ran): see :func:`time_encoder_timing`."""
    timing, strides, where = time_encoder_timing(encoder, options=options, in_chans=in_chans,
                                                 sub_region_size=sub_region_size, batch=batch, device=device,
                                                 precision=precision)
    return timing.median, strides, where


def time_encoder_timing(encoder: str, *, options: dict[str, Any] | None = None, in_chans: int = 3,
                        sub_region_size: int = 256, batch: int = TIMED_BATCH, device: str = "cpu",
                        precision: str = "auto") -> tuple[Timing, list[int], str]:
    """(per-sub-region :class:`Timing`, the encoder's strides, where it ran): ``encoder`` built with random weights
    on ``device``, one sub-region to warm up, then forwards of ``batch`` sub-regions timed by
    :func:`measure_again_if_off` (no gradients, ``precision`` autocast as the run would use it)."""
    keep_triton_out_without_cuda()
    import torch

    from ..engine.run import autocast_dtype, resolve_device
    from ..model import create_region_encoder

    dev = resolve_device(device)
    amp = autocast_dtype(precision, dev)
    kwargs = {k: v for k, v in (options or {}).items() if k not in _NOT_COST}

    def build() -> Any:
        return create_region_encoder(encoder, in_chans=in_chans, pretrained=False, img_size=sub_region_size, **kwargs)

    free = _free_bytes() if dev.type == "cpu" else None
    n = _parameters_without_memory(build) if free is not None else None
    if free is not None and n is not None and 4 * n > MEMORY_SHARE * free:
        raise TooLargeToTime(f"{encoder} has {n / 1e6:.0f} M parameters ({4 * n / 2**30:.1f} GB in float32) and only "
                             f"{free / 2**30:.1f} GB of memory is free: not built just to time it")
    enc = build().to(dev).eval()
    x = torch.randn(max(1, batch), in_chans, sub_region_size, sub_region_size, device=dev)

    def run(t: Any) -> None:
        with torch.no_grad(), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            enc(t)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    # timed as the dock's run will use it: one core left to the viewer. With torch's every thread on a loaded 2-core
    # machine the same batch took 860 ms instead of 1 ms (app/threads.py), the 80x jump of issue 23
    with threads.spare_a_core():
        run(x[:1])  # first call: allocation, kernel selection
        key = (encoder, repr(sorted(kwargs.items())), in_chans, sub_region_size, int(x.shape[0]), str(dev),
               precision, torch.get_num_threads())
        batch_timing = measure_again_if_off(key, lambda: run(x))
    per_sub = Timing(batch_timing.median / x.shape[0], batch_timing.n, batch_timing.spread)
    where = {"cpu": "CPU", "mps": "MPS"}.get(dev.type, f"GPU ({dev})")
    return per_sub, list(enc.reductions), where


def estimate(request: PredictRequest, layer: Any = None, encoder: str | None = None) -> SpeedEstimate:
    """The region-encoder time of ``request`` (its model's config, read without weights; its image, plan options,
    device and precision), or of another ``encoder`` in the model's place (at the sub-region size it suggests)."""
    keep_triton_out_without_cuda()
    from ..engine.plan import make_plan
    from ..io import open_image
    from ..model import encoders
    from ..model.checkpoint import describe_config
    from ..model.tokenize import RegionGrid
    from .layers import layer_to_large_image

    cfg = describe_config(request.model)
    image = layer_to_large_image(layer) if layer is not None else open_image(request.image)
    opts = request.plan
    mpp = opts.mpp if opts.mpp is not None else (cfg.pixel_size if opts.level is None else None)
    if mpp is not None and not image.pixel_size:
        mpp = None  # as driver.resolve: an image without a pixel size is analysed at the requested level (or 0)
    plan = make_plan(image, region_size=opts.region_size or cfg.region_size, overlap=opts.overlap,
                     target_pixel_size=mpp, level=opts.level, context=opts.context, window_size=opts.window_size,
                     order=opts.order, use_mask=opts.use_mask, roi=opts.roi)
    region = int(plan.region_size)
    name = encoder or cfg.region_encoder
    if name == cfg.region_encoder:
        sub, overlap, options = min(int(cfg.sub_region_size), region), int(cfg.overlap), dict(cfg.region_encoder_kwargs)
    else:
        sub, overlap, options = encoders.suggest_sub_region(name, region), 0, {}
    batch = min(TIMED_BATCH, len(RegionGrid((region, region), sub, overlap, 1)))
    timing, strides, where = time_encoder_timing(name, options=options, in_chans=int(cfg.in_chans),
                                                 sub_region_size=sub, batch=batch, device=request.run.device,
                                                 precision=request.run.precision)
    per_region = len(RegionGrid((region, region), sub, overlap, math.gcd(sub - overlap, max(strides))))
    return SpeedEstimate(name, where, plan.n_planned, per_region, sub, timing.median * per_region, timing.n,
                         timing.spread)


__all__ = ["SLOW_S", "SpeedEstimate", "Timing", "TooLargeToTime", "duration", "estimate", "measure",
           "measure_again_if_off", "time_encoder", "time_encoder_timing"]
