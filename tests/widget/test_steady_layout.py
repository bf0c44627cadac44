"""A run's status updates must not lay out the main window (issue 15: each re-layout composited the GL canvas again,
20-25 ms of the event loop per update under software GL while regions streamed in); a real change of the panel's
width still reaches the dock."""

from __future__ import annotations

from qtpy.QtWidgets import QScrollArea, QWidget

from napari_xt.widget import XTDock


def test_status_text_changes_keep_their_size_and_never_re_ask_the_dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)  # a hidden window never lays anything out: nothing would be measured
    dock = XTDock(viewer, models_folder="")
    viewer.window.add_dock_widget(dock, name="xT analysis")
    qtbot.waitUntil(lambda: dock.ready, timeout=90_000)
    [page] = [a for a in dock.native.findChildren(QScrollArea) if a.widget() is dock.panel.native]
    # the status line sits below the scrolling fields, with the buttons (issue 23), behind a firewall of its own
    [pinned] = [a for a in dock.native.findChildren(QScrollArea) if a.widget() is dock.panel.footer.native]
    assert dock.status.native.parentWidget() is not None and pinned.isAncestorOf(dock.status.native)
    asked: list[int] = []
    page.updateGeometry = lambda: asked.append(1)  # type: ignore[method-assign]  # what the filter calls
    pinned.updateGeometry = lambda: asked.append(2)  # type: ignore[method-assign]
    label = dock.status.native
    qtbot.wait(300)  # the shown window laid out and sized the dock
    asked.clear()
    size = label.size()
    for text in ("opening the image and loading the model…", "3 / 64 regions · 12.5 regions/s · running",
                 "64 / 64 regions · 33.1 regions/s · complete " + "with a much longer tail " * 20, "x"):
        dock.status.value = text
        qtbot.wait(30)
        assert label.size() == size
    assert asked == []

    wide = QWidget()  # the panel's minimum width really grows: the dock must be asked again
    wide.setMinimumWidth(page.minimumSizeHint().width() + 200)
    dock.panel.native.layout().addWidget(wide)
    qtbot.waitUntil(lambda: asked != [], timeout=2000)
