"""The widget's side of a run, in plain Python: prepare off the main thread, stream small payloads, finish the store.

Nothing here imports torch or Qt at import time. ``prepare`` and ``stream`` are meant to run in a worker thread; what
they hand back (:class:`Prepared`, :class:`RegionPayload`, :class:`WindowPayload`, :class:`RunEnd`) is plain data the
main thread can show at once. Every failure becomes a sentence for a notification; finished regions stay in the
store, so Resume continues.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

#: longest side of the window-score raster: ~4 MB per array, a few ms to repaint on the main thread
MAX_SCORE_CELLS = 1024


@dataclass
class RegionPayload:
    """One finished region as the main thread needs it: where it is and its (few) detections; no label pixels."""

    region_id: int
    core: tuple[int, int, int, int]
    n_done: int
    n_total: int
    seconds: float
    detections: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None


@dataclass
class WindowPayload:
    """One context window's class scores (classification heads): a few floats and a box, never pixels."""

    window_id: int
    scores: np.ndarray  # (classes,) probabilities
    box: tuple[int, int, int, int]  # level-0 px bounding box of the window's regions
    n_done: int
    n_total: int


@dataclass
class ScoreLayout:
    """Where the context windows lie, as a coarse raster of window ids: the heat map is ``scores[window_map]``.

    Made once per run in the worker, so the main thread repaints the heat map with one vectorised lookup however many
    windows there are. A raster cell is ``cell`` analysis px; with the usual grids (no overlap) every window edge falls
    on a cell edge, so the map lies exactly over the windows it scores.
    """

    class_names: list[str]
    class_colors: list[list[int]]
    window_map: np.ndarray  # int32 (rows, cols): window id per cell, -1 where no window (skipped / outside)
    cell: int  # analysis px per raster cell
    downsample: float  # level-0 px per analysis px
    boxes: dict[int, tuple[int, int, int, int]]  # window id -> level-0 px bounding box
    stored: dict[int, np.ndarray] = field(default_factory=dict)  # window scores already in the store (Resume)
    region_window: dict[int, int] = field(default_factory=dict, repr=False)  # region id -> window id (worker)

    @property
    def cell_level0(self) -> float:
        return self.cell * self.downsample


@dataclass
class Prepared:
    """What ``prepare`` hands the main thread: the run, the model (kept for Resume) and the heat-map layout."""

    run: object
    model: object
    scores: ScoreLayout | None = None


@dataclass
class RunEnd:
    """The last thing a stream yields: how it ended, the summary the CLI would print, the store's image scores."""

    status: str  # "complete" | "cancelled" | "failed" | "partial"
    summary: dict
    message: str = ""
    image_scores: np.ndarray | None = None


def friendly_error(err: BaseException) -> str:
    """A sentence for the user; unknown errors keep their type so bug reports stay useful."""
    from ..io import ImageReadError

    text = str(err).strip() or type(err).__name__
    if "out of memory" in text.lower():
        return ("Out of memory while running the model. Lower the batch size or the region size, or pick a smaller "
                "model; the finished regions are kept and Resume continues from there.")
    if isinstance(err, ImageReadError):
        return f"The image cannot be read: {text}"
    if isinstance(err, (ValueError, FileNotFoundError, PermissionError)):
        text = text.replace("use a new --out or drop --resume.", "name another Results store, or press Run for a new "
                            "one.")  # the store speaks the CLI's words
        return text[0].upper() + text[1:]
    return f"napari-xt failed: {type(err).__name__}: {text}"


def prepare(request, layer=None, model=None) -> Prepared:
    """Open the image (from ``layer`` when given), load the model unless given, and build the run.

    ``request`` is a :class:`~napari_xt.engine.predict.PredictRequest` or a dict of its fields (so callers need not
    import the engine's torch-using modules). Raises ``ValueError`` with a user-readable message for every user
    mistake.

    The plan is made without ``focus`` and re-ordered afterwards: the engine numbers windows in plan order, and the
    store keeps window scores under those numbers, so they must not depend on where the camera was at Run (a Resume
    with the view elsewhere would otherwise file scores under another window's number).
    """
    from ..io import ImageReadError
    from .catalog import load_model
    from .layers import layer_to_large_image
    from .predict import PredictRequest, prepare_run

    if isinstance(request, dict):
        request = PredictRequest(**request)
    focus = request.focus
    request = dataclasses.replace(request, focus=None)
    try:
        image = layer_to_large_image(layer) if layer is not None else None
        if model is None:
            model = load_model(request.model)
        run = prepare_run(request, model=model, image=image)
    except (ValueError, ImageReadError, FileNotFoundError, PermissionError) as err:
        raise ValueError(friendly_error(err)) from err
    except RuntimeError as err:
        raise ValueError(friendly_error(err)) from err
    layout = score_layout(run) if "classification" in run.model.config.heads else None
    if focus is not None:
        run.prioritise(focus)
    return Prepared(run, model, layout)


def _cell_size(plan) -> int:
    """Analysis px per heat-map cell: the largest that keeps every core edge exact, unless the raster gets too big."""
    need = max(1, math.ceil(max(plan.analysis_shape) / MAX_SCORE_CELLS))
    coords = np.array([r.core for r in plan.regions if r.window >= 0], dtype=np.int64).ravel()
    exact = int(np.gcd.reduce(coords)) if coords.size else 1
    if exact >= need:
        return exact
    pitch = plan.region_size - plan.overlap  # regular window edges stay exact; only the last one is rounded
    return next((d for d in range(need, pitch + 1) if pitch % d == 0), need)


def score_layout(run) -> ScoreLayout:
    """The heat-map raster of ``run``'s windows and the scores its store already holds (call before re-ordering)."""
    plan, cfg = run.plan, run.model.config
    n = int(cfg.heads["classification"].get("num_classes", 0))
    names = list(cfg.class_names.get("classification", [])) or [f"class {i}" for i in range(n)]
    cell, f = _cell_size(plan), plan.downsample_to_level0
    rows, cols = (math.ceil(v / cell) for v in plan.analysis_shape)
    window_map = np.full((rows, cols), -1, dtype=np.int32)
    region_window, bounds = {}, {}
    for r in plan.regions:
        if r.window < 0:
            continue
        region_window[r.id] = r.window
        y0, x0, y1, x1 = (int(v / cell + 0.5) for v in r.core)  # neighbours share edges: no gaps, no overlaps
        window_map[y0:y1, x0:x1] = r.window
        b = bounds.get(r.window, r.core)
        bounds[r.window] = (min(b[0], r.core[0]), min(b[1], r.core[1]), max(b[2], r.core[2]), max(b[3], r.core[3]))
    boxes = {w: tuple(round(v * f) for v in b) for w, b in bounds.items()}
    stored = {w: s for w, s in run.store.window_scores().items() if w in boxes and len(s) == len(names)}
    return ScoreLayout(names, [list(c) for c in cfg.class_colors.get("classification", [])], window_map, cell, f,
                       boxes, stored, region_window)


def _payload(result) -> RegionPayload:
    dets = {k: np.asarray(v) for k, v in (result.detections or {}).items()}
    return RegionPayload(result.region_id, tuple(int(v) for v in result.core), result.n_done, result.n_total,
                         float(result.seconds), dets, result.error)


def _leave_a_core(run) -> int | None:
    """Run torch on one CPU core fewer than it would take, for the viewer; returns the thread count to restore.

    With every core busy in torch's thread pool, the viewer's main thread waits for a core (and torch's threads wait
    for each other): on a 2-core machine with other load, the longest event-loop gaps halved and regions/s went up.
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    before = torch.get_num_threads()
    wanted = max(1, min(before, cores - 1))
    if wanted == before:
        return None
    torch.set_num_threads(wanted)
    log.debug("torch threads %d -> %d while the viewer runs", before, wanted)
    return before


def stream(run, layout: ScoreLayout | None = None):
    """Iterate ``run``: a :class:`RegionPayload` per region, a :class:`WindowPayload` per scored window, and a
    :class:`RunEnd` last; never raises."""
    restore = _leave_a_core(run)
    try:
        yield from _stream(run, layout)
    finally:
        if restore is not None:
            import torch

            torch.set_num_threads(restore)


def _stream(run, layout):
    done_before = run.n_done
    t0 = time.perf_counter()
    status, message = "partial", ""
    try:
        for result in run:
            if result.window_scores is None:
                yield _payload(result)
            elif layout is not None:
                window = layout.region_window.get(result.region_id, -1)
                yield WindowPayload(window, np.asarray(result.window_scores, dtype=np.float32),
                                    layout.boxes.get(window, (0, 0, 0, 0)), result.n_done, result.n_total)
        status = "cancelled" if run.cancelled else ("complete" if run.n_done == run.n_total else "partial")
    except Exception as err:  # noqa: BLE001 - shown to the user; the store keeps what is done
        log.error("run failed:\n%s", traceback.format_exc())
        status, message = "failed", friendly_error(err)
    summary = finish(run, time.perf_counter() - t0, done_before, status)
    if status == "partial" and run.n_failed:
        message = f"{run.n_failed} region(s) could not be read; the others are done. Resume retries them."
    image_scores = None
    if status == "complete":
        try:
            found = run.store.image_scores()
            image_scores = None if found is None else np.asarray(found[0], dtype=np.float32)
        except Exception:  # the summary still has them; the panel keeps its live mean
            log.exception("could not read the image scores of %s", run.store.path)
    yield RunEnd(status, summary, message, image_scores)


def finish(run, seconds: float, done_before: int, status: str) -> dict:
    """The CLI's summary; on a complete run also the image-level scores and the store's "complete" mark."""
    new = run.n_done - done_before
    summary = {
        "store": str(run.store.path), "regions_total": run.n_total, "regions_done": run.n_done,
        "regions_new": new, "regions_skipped": len(run.plan.skipped), "regions_failed": run.n_failed,
        "cancelled": run.cancelled, "regions_per_s": round(new / seconds, 3) if seconds > 0 else 0.0,
        "device": str(run.device), "precision": run.options.precision,
    }
    if status != "complete":
        return summary
    try:
        windows = run.store.window_scores()
        if windows:
            scores = np.mean(np.stack(list(windows.values())), axis=0)
            run.store.set_image_scores(scores, run.model.config.class_names.get("classification", []))
            summary["image_scores"] = [round(float(v), 5) for v in scores]
        run.store.finish(summary)
    except Exception:
        log.exception("could not finish store %s", run.store.path)
    return summary
