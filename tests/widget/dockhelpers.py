"""Helpers of the dock tests: a docked widget with its catalogue loaded, run settings, an event-loop gap meter."""

from __future__ import annotations

from napari_xt.widget import XTDock
from napari_xt.widget._stall import GapMeter  # noqa: F401  (re-exported for the tests)

CLASSES = ["background", "stroma", "nucleus"]
COLORS = [[0, 0, 0], [200, 120, 200], [60, 40, 160]]
CLS_CLASSES = ["normal", "tumour", "necrosis", "fat"]
CLS_COLORS = [[10, 200, 10], [220, 20, 60], [90, 90, 90], [250, 230, 140]]


def make_dock(make_napari_viewer, qtbot, models_folder: str = ""):
    viewer = make_napari_viewer()
    dock = XTDock(viewer, models_folder=models_folder)
    viewer.window.add_dock_widget(dock, name="xT analysis")
    qtbot.waitUntil(lambda: dock.ready, timeout=90_000)
    return viewer, dock


def configure(dock, model, level=1, region_size=256, window=2, batch=1):
    dock.model.value = model
    dock.resolution.value = level
    dock.region_size.value = region_size
    dock.batch_size.value = batch
    dock.window_size.value = window
    dock.use_mask.value = False


def buttons(dock) -> tuple[bool, bool, bool]:
    """(Run, Cancel, Resume) enabled."""
    return dock.run_button.enabled, dock.cancel_button.enabled, dock.resume_button.enabled
