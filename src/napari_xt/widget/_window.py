"""Give the canvas most of the window: a window sized to the screen, side docks no wider than they need, the camera
fitted to the image.

Measured on Xvfb without a window manager: napari's default window came up at about 1090 x 750 px on a 1920 x 1080
screen, and the layer docks plus our dock left the canvas a sliver. A slide viewer is for looking at the slide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import (
    QApplication,
    QDockWidget,
    QFrame,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .._compat import canvas_widget, main_window

log = logging.getLogger(__name__)

#: share of the screen the window takes (no window manager maximises it for us under Xvfb or on some desktops)
SCREEN_FRACTION = 0.94
#: side docks (layer list/controls on the left, ours on the right) get at most this share of the window each
SIDE_FRACTION = 0.2
SIDE_MIN_PX, SIDE_MAX_PX = 250, 380


@dataclass(frozen=True)
class WindowLayout:
    window: tuple[int, int]  # (width, height) px
    canvas: tuple[int, int]

    @property
    def canvas_share(self) -> float:
        return self.canvas[0] / max(1, self.window[0])


#: below this window width the layer-controls dock (320 px minimum in napari) is hidden by ``fit_to_screen(..., True)``
#: so the canvas keeps most of the window; napari's Window menu brings it back
NARROW_WINDOW_PX = 1500


def fit_to_screen(viewer: Any, hide_controls_when_narrow: bool = False) -> WindowLayout | None:
    """Size the window to most of its screen, narrow the side docks and fit the camera; None when there is no Qt
    window (headless viewer or a napari that renamed its private attributes: then nothing is changed).

    ``hide_controls_when_narrow`` (the demo) hides napari's layer-controls dock on small screens (1366 x 768 laptops):
    it cannot be narrower than 320 px, which with our dock left the canvas under half the window.
    """
    window = main_window(viewer)
    app = QApplication.instance()
    if window is None or app is None:
        return None
    screen = window.screen() or QApplication.primaryScreen()
    if screen is not None:
        geo = screen.availableGeometry()
        width, height = int(geo.width() * SCREEN_FRACTION), int(geo.height() * SCREEN_FRACTION)
        window.resize(width, height)
        window.move(geo.x() + (geo.width() - width) // 2, geo.y() + (geo.height() - height) // 2)
    app.processEvents()
    if hide_controls_when_narrow and window.width() < NARROW_WINDOW_PX:
        for dock in window.findChildren(QDockWidget):
            if dock.objectName() == "layer controls":
                dock.hide()
    narrow_side_docks(window)
    app.processEvents()
    viewer.reset_view()
    return measure(viewer)


def narrow_side_docks(window: Any) -> None:
    """Give each visible left/right dock column the width it needs (its minimum), within the side limits."""
    side = max(SIDE_MIN_PX, min(SIDE_MAX_PX, int(window.width() * SIDE_FRACTION)))
    for area in (Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.RightDockWidgetArea):
        docks = [d for d in window.findChildren(QDockWidget)
                 if d.isVisible() and not d.isFloating() and window.dockWidgetArea(d) == area]
        if docks:
            widths = [max(min(side, d.minimumSizeHint().width()), SIDE_MIN_PX) for d in docks]
            log.debug("docks %s: widths %s -> %s", [d.objectName() for d in docks], [d.width() for d in docks],
                      widths)
            window.resizeDocks(docks, widths, Qt.Orientation.Horizontal)


def measure(viewer: Any) -> WindowLayout | None:
    window, canvas = main_window(viewer), canvas_widget(viewer)
    if window is None or canvas is None:
        return None
    return WindowLayout((window.width(), window.height()), (canvas.width(), canvas.height()))


def compact_fields(widget: Any, min_chars: int = 6) -> None:
    """Let combo boxes and path fields shrink below their longest entry (full text in the popup and tooltip), so the
    dock is as narrow as its labels need rather than as wide as its longest model name."""
    from qtpy.QtWidgets import QComboBox, QLineEdit

    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(min_chars)
    for line in widget.findChildren(QLineEdit):
        line.setMinimumWidth(60)


def steady_line(label: QLabel, lines: int = 2) -> None:
    """Make ``label`` a status line whose text changes never change its size (and so never lay out the window):
    as wide as its column allows, ``lines`` lines high, wrapped; a longer text is cut, and shown whole as tooltip
    by the caller where it matters."""
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.setMinimumWidth(120)
    label.setFixedHeight(lines * label.fontMetrics().lineSpacing() + 2 * label.margin() + 2)


class _VerticalScroll(QScrollArea):
    """Scrolls vertically only: never narrower than its page needs (nothing cut at the side), any height.

    The dock is re-asked for its size only when the page's minimum width really changed: a status line's new text
    also posts a layout request, and re-asking on each one laid out the whole main window (with a GL canvas under
    software rendering, 20-25 ms of the viewer's event loop per status update while regions streamed in).
    """

    _asked_width = -1

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        page, bar = self.widget(), self.verticalScrollBar()
        if page is not None:
            hint.setWidth(page.minimumSizeHint().width() + (bar.sizeHint().width() if bar is not None else 0))
        return hint

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        if obj is self.widget() and event is not None and event.type() == QEvent.Type.LayoutRequest:
            width = self.minimumSizeHint().width()
            if width != self._asked_width:  # the page's needs changed (model list loaded, long names)
                self._asked_width = width
                self.updateGeometry()  # re-ask the dock
        return super().eventFilter(obj, event)


class _Pinned(_VerticalScroll):
    """The part of a tab page that never scrolls away (the actions and the status line), at its content's height.

    A scroll area that never scrolls, for its firewall: a status line's new text posts a layout request that would
    otherwise climb to the main window and lay it out again (see :class:`_VerticalScroll`); here the dock is re-asked
    only when the content's minimum width or its height really changed.
    """

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        page = self.widget()
        if page is not None:
            hint.setHeight(page.sizeHint().height())
        return hint

    def sizeHint(self) -> QSize:
        return self.minimumSizeHint()

    def eventFilter(self, obj: QObject | None, event: QEvent | None) -> bool:
        if obj is self.widget() and event is not None and event.type() == QEvent.Type.LayoutRequest:
            page = self.widget()
            height = page.sizeHint().height() if page is not None else 0
            if height != self.height():
                self.updateGeometry()
        return super().eventFilter(obj, event)


def _area(area: _VerticalScroll, widget: QWidget) -> _VerticalScroll:
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    return area


def scrolling(widget: QWidget, pinned: QWidget | None = None) -> QWidget:
    """A tab page that scrolls instead of forcing its full height on the window (1366 x 768 laptops), with
    ``pinned`` (the Run/Cancel/Resume buttons and the status line) below the scrolling part, always in sight: in
    napari's default window (about 1280 x 650) they were below the fold (issue 23)."""
    area = _area(_VerticalScroll(), widget)
    if pinned is None:
        return area
    bottom = _area(_Pinned(), pinned)
    bottom.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    bottom.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(area, 1)
    layout.addWidget(bottom, 0)
    return page
