"""What a training run reports while it goes, and how it is asked to stop: typed events and a cancel handle.

The training twin of ``app/events.py``: the trainer yields these, ``app/training.py`` relays them to the CLI's
progress bar and the dock's Fine-tune tab alike, so a field is named once instead of as a string key in four
consumers. Plain numbers, strings and metric dicts (no torch): a worker thread hands them to the viewer's main
thread, and this module imports nothing heavy, so the tab can import it on the main thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

#: Validation metrics by name (``train.validation.Validation.result``): mIoU, F1, accuracy, their mean ``score``,
#: per-class lists; free-form because which appear depends on the tasks trained.
Metrics = dict[str, Any]


@dataclass(frozen=True)
class TrainStarted:
    """Data read, model built, the untrained model scored (``initial``, when asked): the first step comes next."""

    epochs: int
    steps: int
    train_windows: int
    val_windows: int
    initial: Metrics
    time_budget_s: float | None
    class_weights: list[float] | None
    dominant_class: int
    window_size: int
    base: str | None
    weights: str  # a digest of the starting weights: "Train again continues from the last model" is checkable
    note: str | None  # why the region encoder stays frozen, when a default froze it


@dataclass(frozen=True)
class StepDone:
    """One optimiser step (one context window) done."""

    epoch: int
    step: int
    steps: int
    loss: float
    lr: float
    eta_s: float
    window: int  # of this epoch's ``windows``
    windows: int


@dataclass(frozen=True)
class EpochDone:
    """An epoch trained and validated; ``saved`` when it is the best so far (the checkpoint on disk is now it)."""

    epoch: int
    epochs: int
    loss: float
    val: Metrics
    best: float
    best_epoch: int
    saved: bool
    seconds: float


@dataclass(frozen=True)
class TrainFinished:
    """The last event: where the best model is and how training went; ``to_dict`` is ``napari-xt train --json``."""

    out: str
    epochs_run: int
    best_epoch: int
    best_score: float | None
    initial: Metrics
    final: Metrics
    stopped: bool
    train_windows: int
    val_windows: int
    seconds: float
    tasks: list[str]
    base: str | None
    class_counts: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TrainEvent = TrainStarted | StepDone | EpochDone | TrainFinished


class CancelHandle:
    """Ask a run to stop, from any thread: the runner polls ``cancelled`` at safe points (the trainer after each
    window, keeping the best checkpoint) or registers what stops it with ``on_cancel`` (a prediction run's own
    ``cancel``). Made by the caller and handed in, so there is something to cancel before the run exists."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    def cancel(self) -> None:
        with self._lock:
            self._flag.set()
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    @property
    def cancelled(self) -> bool:
        return self._flag.is_set()

    def on_cancel(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` on ``cancel()``; at once when that already happened (a stop pressed while preparing)."""
        with self._lock:
            if not self._flag.is_set():
                self._hooks.append(hook)
                return
        hook()


__all__ = ["CancelHandle", "EpochDone", "Metrics", "StepDone", "TrainEvent", "TrainFinished", "TrainStarted"]
