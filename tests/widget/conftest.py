"""Fixtures of the dock tests: small checkpoints with known classes, and the notifications a test caused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from dockhelpers import CLASSES, CLS_CLASSES, CLS_COLORS, COLORS
from napari.utils.notifications import NotificationSeverity, notification_manager

from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.model.checkpoint import PRESETS


@pytest.fixture(scope="session")
def seg_checkpoint(tmp_path_factory) -> Path:
    """A tiny XL model whose classifier favours class 2: a finished region is never all background (0 = not done)."""
    torch.manual_seed(0)
    cfg = XTConfig.from_dict({**PRESETS["tiny-xl-seg"], "name": "test-seg",
                              "class_names": {"segmentation": CLASSES}, "class_colors": {"segmentation": COLORS}})
    model = build_model(cfg, pretrained=False)
    with torch.no_grad():
        model.heads["segmentation"].classifier.bias.copy_(torch.tensor([0.0, 0.0, 50.0]))
    return save_model(model, tmp_path_factory.mktemp("models") / "seg.safetensors")


@pytest.fixture(scope="session")
def cls_checkpoint(tmp_path_factory) -> Path:
    """A tiny Hyper classifier with four named, coloured classes."""
    torch.manual_seed(1)
    cfg = XTConfig.from_dict({**PRESETS["tiny-hyper-cls"], "name": "test-cls",
                              "heads": {"classification": {"num_classes": 4}},
                              "class_names": {"classification": CLS_CLASSES},
                              "class_colors": {"classification": CLS_COLORS}})
    return save_model(build_model(cfg, pretrained=False), tmp_path_factory.mktemp("models") / "cls.safetensors")


class Notes:
    """Notifications shown since the test began (the real napari notification path)."""

    def __init__(self):
        self.start = len(notification_manager.records)

    def __call__(self):
        return notification_manager.records[self.start:]

    def errors(self) -> list[str]:
        return [str(n.message) for n in self() if n.severity == NotificationSeverity.ERROR]


@pytest.fixture
def notes() -> Notes:
    return Notes()
