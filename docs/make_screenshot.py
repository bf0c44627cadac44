"""Screenshot of the "xT analysis" dock at work, for docs/widget.md; also measures the UI stall it causes.

Run under a real X server (Xvfb is enough)::

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_screenshot.py 12 dock_1920x1080.png
    xvfb-run -a -s "-screen 0 1366x768x24" python docs/make_screenshot.py 12 dock_1366x768.png

It opens the synthetic tissue sample, docks the widget, runs the shipped demo model for a few regions (the ones
nearest the view go first), takes ``viewer.screenshot(canvas_only=False)`` while the run goes on, cancels and
prints: time from Run to the first overlay, and the longest gap of the Qt event loop (a 5 ms QTimer).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_xt.widget import XTDock
from napari_xt.widget._stall import GapMeter, spin_until
from napari_xt.widget._window import fit_to_screen

REGIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
OUT = Path(__file__).resolve().parent / "images" / (sys.argv[2] if len(sys.argv) > 2 else "dock.png")


def main() -> None:
    viewer = napari.Viewer(title="napari-xt")
    viewer.open_sample("napari-xt", "tissue")
    image = viewer.layers["synthetic tissue"]
    dock = XTDock(viewer)
    viewer.window.add_dock_widget(dock, name="xT analysis", area="right")
    app = QApplication.instance()
    spin_until(app, lambda: dock.ready)

    dock.image.value = image
    dock.model.value = "demo-tissue"  # the shipped DEMO model, at its own 1 µm/px (8192 x 8192 px analysed)
    dock.region_size.value = 256
    dock.batch_size.value = 2
    dock.window_size.value = 2
    dock.out.value = Path(tempfile.mkdtemp(prefix="napari-xt-shot-")) / "tissue.xt.zarr"
    layout = fit_to_screen(viewer, hide_controls_when_narrow=True)  # what `napari-xt demo` does
    viewer.reset_view()
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    cam.zoom *= 4  # look at the middle of the slide: the regions in view are computed first
    spin_until(app, lambda: getattr(image, "loaded", True))  # napari renders the (synthetic) tiles in view first
    idle = GapMeter()
    idle.start()
    t0 = time.perf_counter()
    spin_until(app, lambda: time.perf_counter() - t0 > 2)
    idle.timer.stop()

    marks: dict[str, float] = {}
    dock.overlays.refreshed.connect(lambda n: marks.setdefault("first_overlay", time.perf_counter()))
    overall, streaming = GapMeter(), GapMeter()
    dock.runner.prepared.connect(lambda _run: streaming.start())
    overall.start()
    marks["run"] = time.perf_counter()
    dock.run_button.native.click()
    spin_until(app, lambda: dock.overlays.n_shown >= REGIONS)
    app.processEvents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"idle viewer before Run, longest event-loop gap: {idle.max_gap * 1000:.0f} ms")
    print(f"run to first overlay: {marks['first_overlay'] - marks['run']:.2f} s")
    print(f"longest event-loop gap: {overall.max_gap * 1000:.0f} ms from Run (incl. making the Labels layer), "
          f"{streaming.max_gap * 1000:.0f} ms while regions streamed in ({dock.overlays.n_shown} regions)")
    dock.cancel_button.native.click()
    spin_until(app, lambda: not dock.runner.busy)
    if layout is not None:
        print(f"window {layout.window[0]} x {layout.window[1]} px, canvas {layout.canvas[0]} x {layout.canvas[1]} px "
              f"({layout.canvas_share:.0%} of the width)")
    print(f"screenshot: {OUT}")
    viewer.close()


if __name__ == "__main__":
    main()
