"""Issue 23, a dock that does not change settings behind the user's back, in a shown viewer under Xvfb:

- the mouse wheel over an unfocused combo box, spin box or slider (both tabs) scrolls the dock and changes nothing
  (real ``QWheelEvent``s through ``QApplication.sendEvent``); a field the user clicked into still takes the wheel;
- Run / Cancel / Resume and the status line (Train / Stop and theirs) stay in sight in napari's default 1280 x 650
  window, below the scrolling part;
- the dock remembers the last choices across starts, and *Reset to defaults* forgets them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dockhelpers import make_dock
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox, QScrollArea, QScrollBar

from napari_xt.app.layers import results_dir
from napari_xt.widget._memory import settings_path


def _shown_dock(make_napari_viewer, qtbot, size=(1280, 650)):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*size)
    viewer.add_image(np.zeros((1024, 1024, 3), dtype=np.uint8), rgb=True, name="slide")
    _viewer, dock = make_dock(lambda: viewer, qtbot)
    qtbot.wait(300)  # laid out at this size
    return viewer, dock


def _wheel(widget, steps: int = -1) -> None:
    """One notch of a real wheel over the middle of ``widget`` (down for a negative ``steps``)."""
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def _value(widget):
    return widget.currentIndex() if isinstance(widget, QComboBox) else widget.value()


def _fields(page):
    found = page.findChildren((QComboBox, QAbstractSpinBox, QAbstractSlider))
    return [w for w in found if not isinstance(w, QScrollBar) and w.isEnabled()]


def test_the_wheel_scrolls_the_dock_and_changes_no_unfocused_field(make_napari_viewer, qtbot):
    _viewer, dock = _shown_dock(make_napari_viewer, qtbot)
    dock.panel.advanced_section.expand(animate=False)  # its spin boxes too
    dock.model.value = "tiny-hyper-det"  # shows the Min score slider
    qtbot.wait(100)
    dock.tabs.setFocus()
    for index, page in enumerate((dock.panel.native, dock.finetune.native)):  # Run, Fine-tune
        dock.tabs.setCurrentIndex(index)
        [area] = [a for a in dock.native.findChildren(QScrollArea) if a.widget() is page]
        area.verticalScrollBar().setValue(0)
        fields = _fields(area.widget())
        assert len(fields) >= (12 if index == 0 else 6)
        before = [_value(w) for w in fields]
        assert area.verticalScrollBar().maximum() > 0  # 650 px: the page scrolls
        for widget in fields:
            assert not widget.hasFocus() and widget.focusPolicy() == Qt.FocusPolicy.StrongFocus
            _wheel(widget)  # down: the next entry, one step less…
        assert [_value(w) for w in fields] == before  # …but Precision stays auto, Resolution model default…
        assert area.verticalScrollBar().value() > 0  # …and the page scrolled instead
        for widget in fields:
            _wheel(widget, +1)  # up: a field already at its last entry would have moved now
        assert [_value(w) for w in fields] == before
    dock.tabs.setCurrentIndex(0)

    # a field the user clicked into still answers the wheel (the events above were real ones)
    combo = dock.precision.native
    dock.native.window().activateWindow()
    combo.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(combo.hasFocus, timeout=2000)
    start = combo.currentIndex()
    _wheel(combo)
    assert combo.currentIndex() == start + 1


def test_the_actions_and_status_stay_in_sight_in_a_small_window(make_napari_viewer, qtbot):
    viewer, dock = _shown_dock(make_napari_viewer, qtbot)
    window = viewer.window._qt_window
    assert window.height() <= 650

    def in_sight(widget) -> bool:
        region = widget.visibleRegion().boundingRect()
        top_left = widget.mapTo(window, QPoint(0, 0))
        return (widget.isVisible() and region.size() == widget.size()
                and window.rect().contains(top_left) and top_left.y() + widget.height() <= window.height())

    for widget in (dock.run_button.native, dock.cancel_button.native, dock.resume_button.native, dock.status.native):
        assert in_sight(widget), widget
    # the fields scroll above them: the page is taller than what is shown
    [area] = [a for a in dock.native.findChildren(QScrollArea) if a.widget() is dock.panel.native]
    assert area.verticalScrollBar().maximum() > 0
    dock.tabs.setCurrentIndex(1)
    qtbot.wait(100)
    assert in_sight(dock.finetune.train_button.native) and in_sight(dock.finetune.status.native)


def test_the_dock_remembers_the_last_choices_and_reset_forgets_them(make_napari_viewer, qtbot, tmp_path):
    _viewer, dock = make_dock(make_napari_viewer, qtbot)
    default_model = dock.model.value
    assert not settings_path().exists()  # nothing chosen yet: nothing written
    elsewhere = tmp_path / "my results"
    elsewhere.mkdir()
    chosen = {"model": "tiny-hyper-det", "device": "cpu", "precision": "bf16", "batch_size": 5, "context": "global",
              "use_mask": False, "min_score": 0.55, "mpp": 0.75, "overlap": 32, "order": "serpentine",
              "probabilities": True, "max_detections": 17, "prefetch": 6, "read_workers": 3}
    for name, value in chosen.items():
        getattr(dock, name).value = value
    dock.out.value = elsewhere / "picked.xt.zarr"  # the user's own Results path: its folder is remembered
    saved = json.loads(settings_path().read_text())
    assert saved["results"] == str(elsewhere) and saved["precision"] == "bf16"

    viewer2, dock2 = make_dock(make_napari_viewer, qtbot)  # the next start
    assert {name: getattr(dock2, name).value for name in chosen} == pytest.approx(chosen)
    layer = viewer2.add_image(np.zeros((64, 64), dtype=np.uint8), name="next")
    dock2.image.value = layer
    assert Path(dock2.out.value).parent == elsewhere and Path(dock2.out.value).name == "next.xt.zarr"

    dock2.reset_button.native.click()  # forget
    assert dock2.model.value == default_model and dock2.precision.value == "auto" and dock2.batch_size.value == 2
    assert dock2.order.value == "row-major" and dock2.overlap.value == 0 and dock2.use_mask.value
    assert Path(dock2.out.value) == results_dir() / "next.xt.zarr" and not settings_path().exists()
    _viewer3, dock3 = make_dock(make_napari_viewer, qtbot)
    assert dock3.precision.value == "auto" and dock3.model.value == default_model
