"""Interactive-loop benchmark (issue 13): from pressing Train (Quick) to the first prediction overlay in the view.

Run: ``python benchmarks/bench_finetune_loop.py [--size 4096] [--strokes 300] [--budget 30] [--base demo-tissue]``

A real napari viewer (under ``xvfb-run -a`` when there is no display: the script re-executes itself) shows a
synthetic tissue image of ``--size``² px held in memory, with ``--strokes`` short painted strokes of the true class
in a Labels layer (what a user paints in a few minutes). The Fine-tune tab is set to Quick with a ``--budget``
seconds time budget, starting from ``--base`` (the demo-size tiny encoder of ``demo-tissue`` when the catalogue has
it, else a fresh tiny model), and Train is clicked. The feature cache starts empty (a fresh folder), as for a user's
first Train on a new image. Measured from the click, on the main thread:

1. model saved (training over: preparation, encoding every annotated region once into the cache, the budget);
2. first prediction overlay: the first region of the view predicted by the new model is in the "xT preview" layer
   (the goal: <= 60 s on a 2-core CPU), and the whole view done;
3. the same for a second Train after a few more strokes (continues from the first model; the cache is warm).

The view is the viewer's default after opening the image (the whole image), so the preview runs the 64 regions
nearest the centre (``PreviewRequest.max_regions``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_widget import _ensure_display

GOAL_S = 60.0


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4096, help="side of the synthetic image (default 4096)")
    p.add_argument("--strokes", type=int, default=300, help="painted strokes (default 300)")
    p.add_argument("--budget", type=int, default=30, help="Quick mode's training budget in s (default 30)")
    p.add_argument("--base", default=None, help="model to start from (default: demo-tissue, else a fresh tiny)")
    return p.parse_args(argv)


def _strokes(truth, n: int, rng, width: int = 8, length: int = 80):
    import numpy as np

    painted = np.zeros(truth.shape, np.uint8)
    h, w = truth.shape
    for _ in range(n):
        y, x = int(rng.integers(0, h - width)), int(rng.integers(0, w - length))
        painted[y:y + width, x:x + length] = truth[y:y + width, x:x + length] + 1
    return painted


def _train(app, tab, out: Path) -> dict[str, float]:
    from napari_xt.widget._stall import spin_until

    tab.out.value = out
    tab.train_button.native.click()
    spin_until(app, lambda: tab.worker is None and tab.preview_worker is None, timeout=1800)
    if "preview" not in tab.marks:
        raise SystemExit(f"no preview overlay: {tab.status.value}")
    m = tab.marks
    done = tab.last["done"]
    return {"started": m["started"] - m["train"], "train_s": done.seconds,
            "saved": m["trained"] - m["train"], "overlay": m["preview"] - m["train"],
            "view_done": time.perf_counter() - m["train"], "epochs": done.epochs_run,
            "windows": done.train_windows, "regions": tab.overlay.regions_shown}


def main(argv=None) -> int:
    args = _parse(argv)
    _ensure_display()
    tmp = Path(tempfile.mkdtemp(prefix="napari-xt-bench-loop-"))
    os.environ["NAPARI_XT_FEATURE_CACHE"] = str(tmp / "features")  # a cold cache: the user's first Train

    import numpy as np
    from qtpy.QtWidgets import QApplication

    import napari
    from napari_xt.synthetic import TissueSample
    from napari_xt.widget import XTDock
    from napari_xt.widget._stall import spin_until

    t0 = time.perf_counter()
    sample = TissueSample(args.size, args.size, seed=0)
    pixels, truth = np.asarray(sample.levels[0]), np.asarray(sample.label_levels[0])
    print(f"rendered the {args.size}² synthetic slide in {time.perf_counter() - t0:.0f} s (not timed below)")
    painted = _strokes(truth, args.strokes, np.random.default_rng(0))
    viewer = napari.Viewer(title="napari-xt bench: fine-tune loop")
    viewer.window._qt_window.resize(1500, 900)
    image = viewer.add_image(pixels, rgb=True, name="slide")
    labels = viewer.add_labels(painted, name="strokes")
    dock = XTDock(viewer, models_folder="")
    viewer.window.add_dock_widget(dock, name="xT analysis", area="right")
    app = QApplication.instance()
    spin_until(app, lambda: dock.ready)
    tab = dock.finetune
    base = args.base or ("demo-tissue" if any(k == "demo-tissue" for _, k in tab._bases()) else None)
    tab.image.value, tab.labels_layer.value = image, labels
    if base:
        tab.base.value = base
    tab.mode.value = "quick"
    tab.budget.value = args.budget
    tab.epochs.value = 1000
    viewer.reset_view()
    first = _train(app, tab, tmp / "first.safetensors")
    painted[:] = np.maximum(painted, _strokes(truth, 30, np.random.default_rng(1)))  # a few corrections
    labels.refresh()
    second = _train(app, tab, tmp / "second.safetensors")
    print(f"image {args.size}² px in memory, {args.strokes} strokes ({(painted > 0).mean() * 100:.2f} % of the pixels "
          f"painted), Quick, budget {args.budget} s, base {base or 'fresh tiny model'}, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, r in (("first Train (cold feature cache)", first), ("second Train (continues, warm cache)", second)):
        print(f"{name}: training started {r['started']:.1f} s (annotations read, model built), "
              f"trainer ran {r['train_s']:.1f} s; model saved {r['saved']:.1f} s ({r['epochs']} epochs over "
              f"{r['windows']} windows); "
              f"first prediction overlay {r['overlay']:.1f} s (goal {GOAL_S:.0f} s: "
              f"{'met' if r['overlay'] <= GOAL_S else 'NOT met'}); the view's {r['regions']} regions done "
              f"{r['view_done']:.1f} s")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
