"""The mouse wheel scrolls the dock; it never changes a field the user did not click into.

Qt gives combo boxes, spin boxes and sliders the wheel whenever the pointer is over them (``Qt.WheelFocus``), so
scrolling the dock changed whichever field passed under the pointer: a first user's Precision went from ``auto`` to
``bf16`` and Resolution to ``level 3`` while they only meant to scroll (issue 23). The usual fix: such fields take
focus only by click or Tab (``Qt.StrongFocus``), and an event filter hands the wheel of an unfocused one to the
scroll area around it. A field the user clicked into still answers the wheel, as Qt users expect.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QScrollBar,
    QTabBar,
)

#: widgets whose value the wheel changes
GUARDED = (QComboBox, QAbstractSpinBox, QAbstractSlider, QTabBar)


class WheelGuard(QObject):
    """Install with :func:`guard_wheel`; one instance serves every field of a dock."""

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        if event is None or event.type() != QEvent.Type.Wheel or not isinstance(obj, GUARDED):
            return False
        if obj.hasFocus():
            return False  # clicked into: the wheel is the user's way to step through it
        area = _scroll_area_around(obj)
        if area is not None and isinstance(event, QWheelEvent):
            viewport = area.viewport()
            if viewport is not None:
                QApplication.sendEvent(viewport, _moved(event, viewport))
        event.accept()  # taken: neither the field nor (for a real wheel) its parents act on it again
        return True


def _scroll_area_around(widget: Any) -> QAbstractScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


def _moved(event: QWheelEvent, target: Any) -> QWheelEvent:
    """``event`` as ``target`` would have received it (its own coordinates)."""
    pos = target.mapFromGlobal(event.globalPosition().toPoint())
    return QWheelEvent(pos.toPointF(), event.globalPosition(), event.pixelDelta(), event.angleDelta(),
                       event.buttons(), event.modifiers(), event.phase(), event.inverted())


def guard_wheel(root: Any, guard: WheelGuard | None = None) -> WheelGuard:
    """Give every combo box, spin box, slider and tab bar under ``root`` (a QWidget) strong focus and the filter;
    the filter object lives as long as ``root``."""
    guard = guard or WheelGuard(root)
    for widget in root.findChildren(GUARDED):
        if isinstance(widget, QScrollBar):  # a scroll bar's wheel scrolls: what the user wants
            continue
        if not isinstance(widget, QTabBar):  # a tab bar keeps its own focus policy (Tab key navigation)
            widget.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        widget.installEventFilter(guard)
    return guard
