"""What to plan and how to run, as plain frozen dataclasses (no torch): the request types of ``app/`` embed them.

They live in ``engine/`` because the engine consumes them, and import nothing heavy so the dock (which may not import
torch) can build them on the main thread. Every field is reachable from ``napari-xt predict`` flags and from the dock.
"""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1)
#: A region of interest in level-0 px: a rectangle (y0, x0, y1, x1) or a polygon of (y, x) vertices.
Roi = tuple[float, float, float, float] | tuple[tuple[float, float], ...]

CONTEXT_MODES = ("window", "global")
ORDERS = ("row-major", "serpentine", "nearest")
DEVICES_HELP = "auto | cpu | cuda | cuda:N | mps"
PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # auto: bf16 autocast on CUDA (where supported), else fp32


@dataclass(frozen=True)
class PlanOptions:
    """Which regions to run, at which resolution, grouped how. ``None`` means "the model's choice"."""

    mpp: float | None = None  # analysis pixel size (default: the model's, else level 0)
    level: int | None = None  # pyramid level to analyse (excludes mpp)
    region_size: int | None = None  # analysis px (default: the model's)
    overlap: int = 0
    context: str = "window"  # window | global
    window_size: int = 4  # regions per window side (window mode)
    order: str = "row-major"  # row-major | serpentine | nearest
    roi: Roi | None = None
    use_mask: bool = True  # skip background regions
    focus: tuple[float, float] | None = None  # level-0 (y, x): run the windows nearest it first


#: The detection score threshold of a model that carries none of its own (trained before calibration, or a preset).
DEFAULT_SCORE_THRESHOLD = 0.3


def score_threshold_for(options_threshold: float | None, model_threshold: float | None) -> float:
    """The threshold a run uses: the user's, else the model's calibrated one, else the default."""
    if options_threshold is not None:
        return float(options_threshold)
    return float(model_threshold) if model_threshold is not None else DEFAULT_SCORE_THRESHOLD


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what): device, precision, batching, read-ahead, detection decoding, outputs."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 elsewhere) | fp32 | bf16 | fp16
    batch_size: int = 4  # regions encoded together (spread over window_batch windows)
    window_batch: int = 1  # context windows stepped in lockstep, each with its own memory row
    prefetch: int = 4  # regions read ahead
    read_workers: int = 2  # threads reading regions
    #: detections below this score are not kept (nor stored); None: the model's own (the threshold its training chose
    #: on validation, ``XTConfig.score_threshold``), else :data:`DEFAULT_SCORE_THRESHOLD`
    score_threshold: float | None = None
    max_detections_per_region: int = 500
    probabilities: bool = False  # also store per-class probability maps (uint8)
    compile: bool = False  # torch.compile the region encoder (warmed up before the first region; see compiling.py)
    #: a first step of one region, written before the rest, so a viewer's first overlay costs one region's work (the
    #: dock sets it); off, the first step is a full batch: ~10 % more regions/s with tiny + Hyper on 2 CPU cores
    first_region_alone: bool = False
    #: the run's threads (compute, reading, post-processing, writing) run nicer than the caller, so a viewer's event
    #: loop gets a core whenever it wants one (the dock sets it, ``predict --low-priority``; Linux only, see
    #: engine/priority.py)
    low_priority: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field out of range (a user typo must not start a run)."""
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")
        if self.window_batch < 1:
            raise ValueError(f"window batch must be at least 1, not {self.window_batch}")
        if self.prefetch < 1 or self.read_workers < 1:
            raise ValueError("prefetch and read workers must be at least 1")
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score threshold must be in [0, 1], not {self.score_threshold}")
        if self.max_detections_per_region < 1:
            raise ValueError("max detections per region must be at least 1")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
