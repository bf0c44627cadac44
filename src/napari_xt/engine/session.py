"""The widget's side of a run, in plain Python: prepare off the main thread, stream small payloads, finish the store.

Nothing here imports torch or Qt at import time. ``prepare`` and ``stream`` are meant to run in a worker thread; what
they hand back (``Prepared``, ``RegionPayload``, ``RunEnd``) is plain data the main thread can show at once. Every
failure becomes a sentence for a notification; finished regions stay in the store, so Resume continues.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class RegionPayload:
    """One finished region as the main thread needs it: where it is and its (few) detections; no label pixels."""

    region_id: int
    core: tuple[int, int, int, int]
    n_done: int
    n_total: int
    seconds: float
    detections: dict[str, np.ndarray] = field(default_factory=dict)
    window_scores: np.ndarray | None = None
    error: str | None = None


@dataclass
class RunEnd:
    """The last thing a stream yields: how it ended and the summary the CLI would print."""

    status: str  # "complete" | "cancelled" | "failed" | "partial"
    summary: dict
    message: str = ""


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
        return text[0].upper() + text[1:]
    return f"napari-xt failed: {type(err).__name__}: {text}"


def prepare(request, layer=None, model=None):
    """Open the image (from ``layer`` when given), load the model unless given, and build the run.

    ``request`` is a :class:`~napari_xt.engine.predict.PredictRequest` or a dict of its fields (so callers need not
    import the engine's torch-using modules). Returns ``(run, model)``; raises ``ValueError`` with a user-readable
    message for every user mistake.
    """
    from ..io import ImageReadError
    from .catalog import load_model
    from .layers import layer_to_large_image
    from .predict import PredictRequest, prepare_run

    if isinstance(request, dict):
        request = PredictRequest(**request)
    try:
        image = layer_to_large_image(layer) if layer is not None else None
        if model is None:
            model = load_model(request.model)
        return prepare_run(request, model=model, image=image), model
    except (ValueError, ImageReadError, FileNotFoundError, PermissionError) as err:
        raise ValueError(friendly_error(err)) from err
    except RuntimeError as err:
        raise ValueError(friendly_error(err)) from err


def _payload(result) -> RegionPayload:
    dets = {k: np.asarray(v) for k, v in (result.detections or {}).items()}
    return RegionPayload(result.region_id, tuple(int(v) for v in result.core), result.n_done, result.n_total,
                         float(result.seconds), dets, result.window_scores, result.error)


def stream(run):
    """Iterate ``run``, yielding a :class:`RegionPayload` per region and a :class:`RunEnd` last; never raises."""
    done_before = run.n_done
    t0 = time.perf_counter()
    status, message = "partial", ""
    try:
        for result in run:
            yield _payload(result)
        status = "cancelled" if run.cancelled else ("complete" if run.n_done == run.n_total else "partial")
    except Exception as err:  # noqa: BLE001 - shown to the user; the store keeps what is done
        log.error("run failed:\n%s", traceback.format_exc())
        status, message = "failed", friendly_error(err)
    summary = finish(run, time.perf_counter() - t0, done_before, status)
    if status == "partial" and run.n_failed:
        message = f"{run.n_failed} region(s) could not be read; the others are done. Resume retries them."
    yield RunEnd(status, summary, message)


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
