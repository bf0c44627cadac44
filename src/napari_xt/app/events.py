"""What a run reports while it goes: a small union of typed events, the same for the CLI, batch workers and the dock.

Events carry plain numpy and numbers (no torch, no label pixels: the store has those), so a worker thread can hand
them to the viewer's main thread, and a CLI progress bar needs nothing else.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from ..errors import XTError

RunStatus = Literal["complete", "partial", "cancelled", "failed"]

#: longest side of the window-score raster: ~4 MB per array, a few ms to repaint on the main thread
MAX_SCORE_CELLS = 1024


@dataclass(frozen=True)
class Detections:
    """Objects found in one region, in level-0 px (centre y/x, height/width), with class id and score."""

    y: np.ndarray
    x: np.ndarray
    h: np.ndarray
    w: np.ndarray
    cls: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def as_table(self) -> dict[str, np.ndarray]:
        """Column name -> array, the layout ``ResultStore.detections()`` returns."""
        return {"y": self.y, "x": self.x, "h": self.h, "w": self.w, "cls": self.cls, "score": self.score}

    @classmethod
    def from_table(cls, table: dict[str, np.ndarray]) -> Detections:
        empty = np.zeros(0, np.float32)
        get = lambda k, dtype: np.asarray(table.get(k, empty), dtype=dtype)
        return cls(get("y", np.float32), get("x", np.float32), get("h", np.float32), get("w", np.float32),
                   get("cls", np.int32), get("score", np.float32))


@dataclass
class ScoreLayout:
    """Where the context windows lie, as a coarse raster of window ids: the heat map is ``scores[window_map]``.

    Made once per run in the worker, so the main thread repaints the heat map with one vectorised lookup however many
    windows there are. A raster cell is ``cell`` analysis px; with the usual grids (no overlap) every window edge falls
    on a cell edge, so the map lies exactly over the windows it scores.
    """

    class_names: list[str]
    class_colors: list[list[int]]
    window_map: np.ndarray  # int32 (rows, cols): window id per cell, -1 where no window (skipped / outside)
    cell: int  # analysis px per raster cell
    downsample: float  # level-0 px per analysis px
    boxes: dict[int, tuple[int, int, int, int]]  # window id -> level-0 px bounding box
    stored: dict[int, np.ndarray] = field(default_factory=dict)  # window scores already in the store (Resume)

    @property
    def cell_level0(self) -> float:
        return self.cell * self.downsample


@dataclass(frozen=True)
class RunStarted:
    """The run is prepared: where it writes, how much there is, what is done already."""

    store: str
    n_total: int
    n_done: int
    layout: ScoreLayout | None = None  # classification heads: where each window's scores go


@dataclass(frozen=True)
class RegionDone:
    """One region's results are on disk (labels, detections); the viewer may show it."""

    region_id: int
    core: tuple[int, int, int, int]  # analysis-level px
    n_done: int
    n_total: int
    seconds: float
    detections: Detections | None = None


@dataclass(frozen=True)
class RegionFailed:
    """One region could not be read; the others go on and a resumed run retries it."""

    region_id: int
    box: tuple[int, int, int, int]
    reason: str
    n_done: int
    n_total: int


@dataclass(frozen=True)
class WindowScored:
    """One context window's class probabilities (classification heads)."""

    window_id: int
    scores: np.ndarray  # (classes,) float32
    box: tuple[int, int, int, int]  # level-0 px bounding box of the window's regions
    n_done: int
    n_total: int


@dataclass(frozen=True)
class RunSummary:
    """How a run went; ``to_dict`` is what ``napari-xt predict --json`` prints and the store keeps."""

    store: str
    regions_total: int
    regions_done: int
    regions_new: int
    regions_skipped: int
    regions_failed: int
    cancelled: bool
    regions_per_s: float
    device: str
    precision: str
    regions_repaired: int = 0  # done regions a resume found damaged (chunks missing or undecodable) and redid
    image_scores: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        if self.image_scores is None:
            del d["image_scores"]
        else:
            d["image_scores"] = list(self.image_scores)
        return d


@dataclass(frozen=True)
class RunFinished:
    """The last event of every run: how it ended, its summary, and the error that ended it (``failed``)."""

    status: RunStatus
    summary: RunSummary
    error: BaseException | None = None
    image_scores: np.ndarray | None = None  # complete runs with a classification head

    @property
    def user_error(self) -> bool:
        """True when the failure is the user's input (worded as one sentence), not a bug."""
        return isinstance(self.error, XTError)


RunEvent = RunStarted | RegionDone | RegionFailed | WindowScored | RunFinished


def rate(n_new: int, seconds: float) -> float:
    return round(n_new / seconds, 3) if seconds > 0 and math.isfinite(seconds) else 0.0
