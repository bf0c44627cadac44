"""How long a region encoder will take on an image on this device: one timed batch, extrapolated (not a guess).

Foundation-model encoders differ by 100x in cost (tiny: ~20 ms per 512 px region on a CPU; a ViT-H: tens of
seconds), and users pick them from a list. The dock warns before a run that would take hours: it builds the encoder
(random weights: the cost does not depend on their values, and no download is needed), runs one sub-region to warm
up, times one batch of a region's sub-regions on the chosen device and precision, and multiplies by the sub-regions
per region and the regions the plan holds for this image (the driver's plan rule, foreground mask included). The
estimate covers the region encoder only (the part that grows with the encoder; the pipeline adds ~85 ms per region on
a CPU, see DESIGN.md).

torch-free at import, like the rest of ``app/``: the dock runs :func:`estimate` in a worker thread.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._compat import keep_triton_out_without_cuda

if TYPE_CHECKING:
    from .request import PredictRequest

#: An estimate at or above this many seconds is shown as a warning.
SLOW_S = 600.0
#: Sub-regions timed together (at most a region's worth): one batch, as the issue asks, bounded for a ViT-H on a CPU.
TIMED_BATCH = 4
#: A batch that takes under REPEAT_WITHIN_S is timed again (up to REPEATS times, median kept): a ms-scale timing on
#: a shared CPU is noise otherwise. A slow encoder is timed once.
REPEATS, REPEAT_WITHIN_S = 5, 1.0
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

    @property
    def total_s(self) -> float:
        return self.seconds_per_region * self.regions

    @property
    def slow(self) -> bool:
        return self.total_s >= SLOW_S

    def note(self) -> str:
        """'about 12 min for this image on CPU (320 regions, 2.2 s each; region encoder only)'."""
        each = duration(self.seconds_per_region)
        text = (f"{duration(self.total_s, about=True)} for this image on {self.device} ({self.regions} regions of "
                f"{self.sub_regions} sub-regions, {each} each; region encoder only)")
        return f"slow: {text}" if self.slow else text


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
    """(seconds per sub-region, the encoder's strides, where it ran): ``encoder`` built with random weights on
    ``device``, one sub-region to warm up, then one timed forward of ``batch`` sub-regions (no gradients,
    ``precision`` autocast as the run would use it)."""
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

    run(x[:1])  # first call: allocation, kernel selection
    times: list[float] = []
    while len(times) < REPEATS and sum(times) < REPEAT_WITHIN_S:  # a cheap encoder: the median of a few batches
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    where = {"cpu": "CPU", "mps": "MPS"}.get(dev.type, f"GPU ({dev})")
    return sorted(times)[len(times) // 2] / x.shape[0], list(enc.reductions), where


def estimate(request: PredictRequest, layer: Any = None, encoder: str | None = None) -> SpeedEstimate:
    """The region-encoder time of ``request`` (its model's config, read without weights; its image, plan options,
    device and precision), or of another ``encoder`` in the model's place (at the sub-region size it suggests)."""
    keep_triton_out_without_cuda()
    from ..engine.plan import make_plan
    from ..io import open_image
    from ..model import encoder_spec
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
        sub, overlap, options = encoder_spec.suggest_sub_region(name, region), 0, {}
    batch = min(TIMED_BATCH, len(RegionGrid((region, region), sub, overlap, 1)))
    seconds, strides, where = time_encoder(name, options=options, in_chans=int(cfg.in_chans), sub_region_size=sub,
                                           batch=batch, device=request.run.device, precision=request.run.precision)
    per_region = len(RegionGrid((region, region), sub, overlap, math.gcd(sub - overlap, max(strides))))
    return SpeedEstimate(name, where, plan.n_planned, per_region, sub, seconds * per_region)


__all__ = ["SLOW_S", "SpeedEstimate", "TooLargeToTime", "duration", "estimate", "time_encoder"]
