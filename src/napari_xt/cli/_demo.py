"""``napari-xt demo``: napari with the synthetic sample, the dock, the demo model selected, and the run started.

A newcomer's first command: nothing to download or configure, overlays appear region by region within seconds
(the regions in view first). The sample is rendered lazily, so even the 16k x 16k slide opens at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .._compat import keep_triton_out_without_cuda

DEMO_NOTE = "DEMO model trained on synthetic images by scripts/make_demo_models.sh: it shows how napari-xt works; " \
            "it is not a clinical or operational model."


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="open napari with a synthetic sample and run the demo model in the dock",
                       description=f"Open napari with a synthetic sample, dock 'xT analysis' with the demo model "
                                   f"and start the run. {DEMO_NOTE}")
    p.add_argument("which", nargs="?", default="tissue", choices=["tissue", "sar"],
                   help="tissue slide (segmentation) or SAR scene (ships + water/land); default tissue")
    p.add_argument("--size", type=int, default=16384, help="sample width/height in px (default 16384)")
    p.add_argument("--seed", type=int, default=0, help="sample seed (the demo models were trained on seed 1)")
    p.add_argument("--model", help="model instead of the demo one (checkpoint path or preset)")
    p.add_argument("--no-run", action="store_true", help="only open and dock; press Run yourself")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # CI: exit after the first overlay
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    keep_triton_out_without_cuda()  # the viewer's GL context comes before the model's timm import here
    if not 512 <= args.size <= 200_000:
        raise ValueError(f"--size must be between 512 and 200000, got {args.size}")
    from qtpy.QtCore import QTimer

    import napari

    from .._sample_data import sar_scene, tissue_slide
    from ..model.checkpoint import demo_model_path
    from ..widget._window import fit_to_screen

    model = args.model or f"demo-{args.which}"
    if args.model is None and demo_model_path(model) is None:
        raise FileNotFoundError(f"the demo model {model!r} is not installed with this copy of napari-xt "
                                "(src/napari_xt/data); run scripts/make_demo_models.sh or pass --model")
    layers = (tissue_slide if args.which == "tissue" else sar_scene)(args.size, args.seed)
    viewer = napari.Viewer(title=f"napari-xt demo ({args.which})", show=True)
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.layers.selection.active = viewer.layers[0]
    _, dock = viewer.window.add_plugin_dock_widget("napari-xt", "xT analysis")

    def fit_window() -> None:
        layout = fit_to_screen(viewer, hide_controls_when_narrow=True)
        if layout is not None:
            print(f"napari-xt demo: window {layout.window[0]} x {layout.window[1]} px, canvas {layout.canvas[0]} x "
                  f"{layout.canvas[1]} px ({layout.canvas_share:.0%} of the width)", file=sys.stderr)

    QTimer.singleShot(0, fit_window)  # at once, and again once the model list has filled the dock
    print(f"napari-xt demo: {DEMO_NOTE}", file=sys.stderr)
    state: dict[str, Any] = {"t_run": None, "first": None, "code": 0}

    def quit_(code: int) -> None:
        state["code"] = code
        viewer.close()

    def start_when_ready() -> None:
        if not dock.ready:
            QTimer.singleShot(50, start_when_ready)
            return
        dock.image.value = viewer.layers[0]
        if not dock.add_checkpoint(model):  # lists and selects it; a notification says why when it cannot
            return quit_(1) if args.smoke else None
        fit_window()
        if args.no_run:
            return None
        state["t_run"] = time.perf_counter()
        dock.start()
        return None

    def on_region(_payload) -> None:
        if state["first"] is None and state["t_run"] is not None:
            state["first"] = time.perf_counter() - state["t_run"]
            print(f"napari-xt demo: first region shown {state['first']:.2f} s after Run", file=sys.stderr)
            if args.smoke:
                dock.cancel()
                QTimer.singleShot(200, lambda: quit_(0))

    def on_failed(message: str) -> None:
        print(f"napari-xt demo: {message}", file=sys.stderr)
        if args.smoke:
            quit_(1)

    dock.runner.region.connect(on_region)
    dock.runner.failed.connect(on_failed)
    QTimer.singleShot(0, start_when_ready)
    if args.smoke:
        QTimer.singleShot(120_000, lambda: quit_(1))  # never hang CI
    napari.run()
    return state["code"]
