"""``napari-xt demo`` in a real process and window: sample, dock, demo model, run, first overlay; the demo models."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from napari_xt.app import catalog
from napari_xt.model import load_model
from napari_xt.model.checkpoint import DEMO_MODELS, demo_model_path


@pytest.mark.parametrize("name", sorted(DEMO_MODELS))
def test_demo_models_ship_with_the_package_and_say_they_are_demos(name):
    assert demo_model_path(name) is not None, f"{name} missing: run scripts/make_demo_models.sh"
    info = catalog.describe(name)
    assert info.source == "demo" and "DEMO" in info.label
    assert "not" in info.description and "DEMO" in info.description
    cfg = load_model(name).config
    assert cfg.name == name and cfg.pixel_size is not None
    assert demo_model_path(name).stat().st_size < 8 * 2**20  # a few MB inside the wheel
    if name == "demo-tissue":
        assert cfg.class_names["segmentation"] == ["background", "stroma", "nucleus", "gland"]
    else:
        assert cfg.class_names["detection"] == ["ship"] and cfg.in_chans == 2


def test_demo_command_shows_the_first_region(tmp_path):
    res = subprocess.run([sys.executable, "-m", "napari_xt.cli", "demo", "--size", "4096", "--smoke"],
                         capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    match = re.search(r"first region shown ([0-9.]+) s after Run", res.stderr)
    assert match, res.stderr[-3000:]
    assert "DEMO model" in res.stderr
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
