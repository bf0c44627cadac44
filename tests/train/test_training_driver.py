"""The one training driver (``app/training.py``): typed events in order, a cancel handle that works before the
trainer exists, and ``fit`` returning what ``--json`` prints."""

from __future__ import annotations

import numpy as np

from napari_xt.app.training import TrainHandle, train, train_events
from napari_xt.io import array_image
from napari_xt.synthetic import TissueSample
from napari_xt.train import Augment, SegmentationLabels, TrainingImage, TrainOptions
from napari_xt.train.events import CancelHandle, EpochDone, StepDone, TrainFinished, TrainStarted


def _item(size=256):
    sample = TissueSample(size, size, seed=2)
    labels = SegmentationLabels.from_array(np.asarray(sample.label_levels[0]), (size, size), ignore=255,
                                           class_names=sample.class_names)
    return TrainingImage(array_image(np.asarray(sample.levels[0])), segmentation=labels)


def _options(out, epochs=1, **kw):
    return TrainOptions(out=str(out), epochs=epochs, region_size=64, window_size=2, use_mask=False,
                        context_kwargs={"hidden": 16}, augment=Augment(geometric=False, colour=0), **kw)


def test_events_come_typed_and_in_order(tmp_path):
    seen = []
    finished = train([_item()], _options(tmp_path / "m.safetensors"), on_event=seen.append)
    kinds = [type(e) for e in seen]
    assert kinds[0] is TrainStarted and kinds[-1] is TrainFinished and EpochDone in kinds and StepDone in kinds
    assert finished is seen[-1] and finished.out == str(tmp_path / "m.safetensors") and not finished.stopped
    assert finished.to_dict()["epochs_run"] == 1 and (tmp_path / "m.safetensors").is_file()


def test_cancelled_before_the_trainer_exists_trains_and_saves_nothing(tmp_path):
    handle = TrainHandle()
    handle.cancel()
    assert list(train_events([_item()], _options(tmp_path / "m.safetensors"), handle)) == []
    assert handle.trainer is not None and not (tmp_path / "m.safetensors").exists()


def test_cancelled_after_the_first_step_keeps_a_checkpoint(tmp_path):
    handle = TrainHandle()
    events = []
    for event in train_events([_item()], _options(tmp_path / "m.safetensors", epochs=5), handle):
        events.append(event)
        if isinstance(event, StepDone):
            handle.cancel()
    done = events[-1]
    assert isinstance(done, TrainFinished) and done.stopped and done.epochs_run == 1
    assert (tmp_path / "m.safetensors").is_file()


def test_a_cancel_hook_runs_once_and_at_once_when_already_cancelled():
    calls = []
    handle = CancelHandle()
    handle.on_cancel(lambda: calls.append("first"))
    handle.cancel()
    handle.cancel()
    handle.on_cancel(lambda: calls.append("late"))
    assert handle.cancelled and calls == ["first", "late"]
