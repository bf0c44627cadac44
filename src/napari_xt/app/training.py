"""The one training driver: training images and ``TrainOptions`` in, typed events out, for the CLI and the dock.

The training twin of ``app/driver.py``: ``napari-xt train`` and the Fine-tune tab (through ``app/finetune.py``)
both call :func:`train_events` and read the same :data:`TrainEvent` union, and both stop a run through a
:class:`TrainHandle` made before the run exists (the trainer polls it after each window and keeps the best
checkpoint). torch is imported inside the call only: the dock imports this module on the main thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .._compat import keep_triton_out_without_cuda
from ..train.events import (
    CancelHandle,
    EpochDone,
    StepDone,
    TrainEvent,
    TrainFinished,
    TrainStarted,
)
from ..train.options import TrainOptions

if TYPE_CHECKING:
    from ..train import Trainer, TrainingImage


class TrainHandle(CancelHandle):
    """Cancel a training run from any thread; ``trainer`` is the run once built (None before), for the tests and
    benchmarks that look at what it trained on (its windows, its images)."""

    def __init__(self) -> None:
        super().__init__()
        self.trainer: Trainer | None = None


def train_events(images: list[TrainingImage], options: TrainOptions, handle: TrainHandle | None = None,
                 on_ready: Callable[[Trainer], None] | None = None) -> Iterator[TrainEvent]:
    """Build the trainer (data read, model made) and relay its events, :class:`TrainStarted` to
    :class:`TrainFinished`. A run cancelled before the trainer exists yields nothing and saves nothing; cancelled
    later, it ends after the current window with the best checkpoint so far saved. ``on_ready`` sees the trainer
    before its first event (the CLI prints why the encoder is frozen before the untrained model is scored)."""
    keep_triton_out_without_cuda()  # before ..train imports timm: this may be the process's first model path
    from ..train import Trainer

    handle = handle if handle is not None else TrainHandle()
    trainer = Trainer(images, options, cancel=handle)
    handle.trainer = trainer
    if handle.cancelled:
        return
    if on_ready is not None:
        on_ready(trainer)
    yield from trainer.events()


def train(images: list[TrainingImage], options: TrainOptions, on_event: Callable[[TrainEvent], None] | None = None,
          handle: TrainHandle | None = None, on_ready: Callable[[Trainer], None] | None = None
          ) -> TrainFinished | None:
    """Drive :func:`train_events` to the end; the :class:`TrainFinished` event (None when cancelled before the
    trainer was built)."""
    finished = None
    for event in train_events(images, options, handle, on_ready):
        if on_event is not None:
            on_event(event)
        if isinstance(event, TrainFinished):
            finished = event
    return finished


__all__ = ["CancelHandle", "EpochDone", "StepDone", "TrainEvent", "TrainFinished", "TrainHandle", "TrainOptions",
           "TrainStarted", "train", "train_events"]
