"""What a training run reports before its first step: the weights it starts from (so "continue from the last model"
is checkable) and, unless skipped for the interactive loop's speed, the untrained baseline."""

from __future__ import annotations

import numpy as np

from napari_xt.io import array_image
from napari_xt.model import load_model
from napari_xt.synthetic import TissueSample
from napari_xt.train import Augment, SegmentationLabels, Trainer, TrainingImage, TrainOptions
from napari_xt.train.events import TrainEvent, TrainFinished, TrainStarted
from napari_xt.train.loop import weights_digest


def _item(size=512):
    sample = TissueSample(size, size, seed=2)
    labels = SegmentationLabels.from_array(np.asarray(sample.label_levels[0]), (size, size), ignore=255,
                                           class_names=sample.class_names)
    return TrainingImage(array_image(np.asarray(sample.levels[0])), segmentation=labels)


def _options(out, **kw):
    return TrainOptions(out=str(out), epochs=1, region_size=128, window_size=2, use_mask=False,
                        context_kwargs={"hidden": 32}, augment=Augment(geometric=False, colour=0), **kw)


def test_start_event_names_the_weights_and_continuing_starts_from_them(tmp_path):
    item = _item()
    events: list[TrainEvent] = []
    first = Trainer([item], _options(tmp_path / "a.safetensors"))
    first.fit(events.append)
    start = events[0]
    assert isinstance(start, TrainStarted) and start.base is None and start.initial["miou"] >= 0
    events.clear()
    second = Trainer([item], _options(tmp_path / "b.safetensors", base=str(tmp_path / "a.safetensors"),
                                      initial_validation=False))
    second.fit(events.append)
    start, done = events[0], events[-1]
    assert isinstance(start, TrainStarted) and isinstance(done, TrainFinished)
    assert start.weights == weights_digest(load_model(tmp_path / "a.safetensors"))
    assert start.base == str(tmp_path / "a.safetensors")
    assert start.initial == {} and done.initial == {}  # no baseline pass
    assert done.final["miou"] >= 0  # the epoch's validation still ran
