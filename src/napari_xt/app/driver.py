"""The one run driver: request in, typed events out, one finish path, for the CLI, batch workers and the dock.

``prepare`` does everything that can fail on bad input *before* any work starts (unreadable image, incompatible
model, a store made by another model), so errors arrive as one typed error and nothing half-written is left.
``events`` runs a prepared run and never raises: its last event is a :class:`RunFinished` saying how it ended.
``predict`` drives ``events`` to the end for callers that want a summary (and the failure raised).

torch is imported inside the calls only: the dock imports this module on the main thread.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .._compat import keep_triton_out_without_cuda
from ..errors import PlanError, StoreError
from ..store.identity import Identity
from . import threads
from .events import (
    Detections,
    RegionDone,
    RegionFailed,
    RunEvent,
    RunFinished,
    RunStarted,
    RunStatus,
    RunSummary,
    ScoreLayout,
    WindowScored,
    rate,
)
from .request import PredictRequest

if TYPE_CHECKING:
    import torch

    from ..engine.normalise import Normaliser
    from ..engine.plan import Plan
    from ..engine.run import InferenceRun, RegionResult
    from ..io import LargeImage
    from ..model import XTModel

log = logging.getLogger(__name__)

@dataclass
class Inputs:
    """A request resolved into things: the image opened, the model loaded, the plan made, their identities, and the
    device and normaliser checked on the way (handed to the run, which does not resolve them again)."""

    request: PredictRequest
    image: LargeImage
    model: XTModel
    plan: Plan
    identity: Identity  # which model, image and plan (what a store made from these records)
    device: torch.device | None = None
    normaliser: Normaliser | None = None


@dataclass
class PreparedRun:
    """A run ready to go: the engine's run over its store, the model (kept for Resume) and the heat-map layout."""

    request: PredictRequest
    run: InferenceRun
    layout: ScoreLayout | None = None

    @property
    def model(self) -> XTModel:
        return self.run.model


def load_model(name: str) -> XTModel:
    """The model for a zoo name or a checkpoint path (torch is imported here, in the caller's thread)."""
    keep_triton_out_without_cuda()
    from ..model import load_model as _load

    return _load(name)


def resolve(request: PredictRequest, model: XTModel | None = None, image: LargeImage | None = None) -> Inputs:
    """Open the image, load the model and make the plan; raises typed errors for every user mistake."""
    keep_triton_out_without_cuda()
    from ..engine.identity import image_fingerprint, model_checksum
    from ..engine.normalise import Normaliser
    from ..engine.plan import make_plan, model_pixel_unit
    from ..engine.run import autocast_dtype, resolve_device
    from ..io import open_image

    request.run.validate()
    if image is None:
        image = open_image(request.image)
    if model is None:
        model = load_model(request.model)
    cfg = model.config
    device = resolve_device(request.run.device)
    autocast_dtype(request.run.precision, device)  # an unsupported precision is refused here
    normaliser = Normaliser.from_config(cfg, image)
    opts = request.plan
    mpp = opts.mpp if opts.mpp is not None else (cfg.pixel_size if opts.level is None else None)
    if mpp is not None and not image.pixel_size:
        mpp = None  # an image without a pixel size is analysed at the requested level (or 0)
    try:
        plan = make_plan(
            image, region_size=opts.region_size or cfg.region_size, overlap=opts.overlap, target_pixel_size=mpp,
            level=opts.level, context=opts.context, window_size=opts.window_size, order=opts.order,
            use_mask=opts.use_mask, roi=opts.roi, focus=opts.focus,
            target_unit=model_pixel_unit(cfg) if opts.mpp is None else None,  # --mpp is in the image's unit
        )
    except PlanError as err:  # in a batch of hundreds, an error must say which image it is about
        raise PlanError(f"{request.image}: {err}", option=err.option) from None
    identity = Identity(model_checksum(model), image_fingerprint(image), plan.checksum())
    return Inputs(request, image, model, plan, identity, device, normaliser)


def _store_meta(inputs: Inputs) -> dict[str, object]:
    request, image, plan, cfg = inputs.request, inputs.image, inputs.plan, inputs.model.config
    return {
        **inputs.identity.checksums(),
        "model": request.model,
        "model_config": cfg.to_dict(),
        "image": os.path.abspath(str(request.image)),
        "image_shape": list(image.levels[0].shape),
        "image_pixel_size": list(image.pixel_size) if image.pixel_size else None,  # level 0, (y, x)
        "image_pixel_unit": image.pixel_unit if image.pixel_size else None,
        "image_georef": image.georef.to_dict() if image.georef is not None else None,  # CRS + level-0 transform
        # the plan's own fields, not asdict(plan): that deep-copies every region (3.9 s for a 150k-region plan, with
        # 60-80 ms stretches in which the viewer's thread could not run; issue 25)
        "plan": {**{f.name: getattr(plan, f.name) for f in fields(plan)
                    if f.name not in ("regions", "windows", "run_order")},
                 "windows": plan.windows_by_id()},
        "started": _dt.datetime.now(_dt.UTC).isoformat(),
        "software": f"napari-xt {__version__}",
    }


def prepare(request: PredictRequest, model: XTModel | None = None, image: LargeImage | None = None,
            inputs: Inputs | None = None, staged: bool = True) -> PreparedRun:
    """Resolve ``request`` (unless ``inputs`` are given) and make or reopen its store; nothing runs yet.

    ``staged``: post-processing and store writes on their own threads behind the model (the engine's pipeline);
    False runs the same stages on one thread (identical results, tested: the reference path).
    """
    from ..engine.run import InferenceRun
    from ..store import ResultStore, StoreSpec, is_store, looks_like_store

    if inputs is None:
        inputs = resolve(request, model=model, image=image)
    cfg, plan, out = inputs.model.config, inputs.plan, Path(request.out)
    if request.resume and (is_store(out) or looks_like_store(out)):  # a damaged store is repaired or named here
        cores = np.asarray([r.core for r in plan.regions], dtype=np.int64).reshape(-1, 4)
        store = ResultStore.open_for_resume(out, inputs.identity, cores=cores, deep=request.verify)
    else:
        seg = cfg.heads.get("segmentation", {})
        spec = StoreSpec(
            shape=plan.analysis_shape, num_classes=int(seg.get("num_classes", 0)),
            class_names=list(cfg.class_names.get("segmentation", [])),
            class_colors=[list(c) for c in cfg.class_colors.get("segmentation", [])],
            region_count=len(plan.regions), probabilities=request.run.probabilities,
            downsample_to_level0=plan.downsample_to_level0,
        )
        store = ResultStore.create(out, spec, _store_meta(inputs), overwrite=request.overwrite)
    run = InferenceRun(inputs.model, inputs.image, plan, store, request.run, pipeline=staged, device=inputs.device,
                       normaliser=inputs.normaliser)
    layout = None
    if "classification" in cfg.heads:
        from .scores import score_layout

        layout = score_layout(plan, cfg.heads, cfg.class_names, cfg.class_colors, store.window_scores())
    return PreparedRun(request, run, layout)


# -- running ---------------------------------------------------------------------------------------------------------
def events(prepared: PreparedRun, spare_a_core: bool = False) -> Iterator[RunEvent]:
    """Run ``prepared`` and report: :class:`RunStarted`, then region/window events, then :class:`RunFinished`.

    Never raises: a failure ends the stream with ``RunFinished(status="failed", error=...)`` and the store keeps
    every finished region. ``spare_a_core`` leaves one CPU core to a viewer's main thread while torch runs.
    """
    with threads.spare_a_core() if spare_a_core else nullcontext():
        yield from _events(prepared)


def _events(prepared: PreparedRun) -> Iterator[RunEvent]:
    run, layout = prepared.run, prepared.layout
    yield RunStarted(str(run.store.path), run.n_total, run.n_done, layout)
    t0 = time.perf_counter()
    status: RunStatus = "partial"
    error: BaseException | None = None
    try:
        for result in run:
            yield _event(run, result, layout)
        status = "cancelled" if run.cancelled else ("complete" if run.n_done == run.n_total else "partial")
    except Exception as err:
        # the caller words the error (one line in a terminal, a notification in the dock); a traceback helps with a
        # bug, not with the user's own environment (disk full, permissions): that one is for --debug only
        if isinstance(err, StoreError | OSError):
            log.debug("run failed", exc_info=True)
        else:
            log.error("run failed:\n%s", traceback.format_exc())
        status, error = "failed", err
    yield finish(run, time.perf_counter() - t0, status, error)


def _event(run: InferenceRun, result: RegionResult, layout: ScoreLayout | None) -> RunEvent:
    if result.window_scores is not None:
        window = run.plan.regions[result.region_id].window
        box = layout.boxes.get(window, (0, 0, 0, 0)) if layout is not None else (0, 0, 0, 0)
        return WindowScored(window, np.asarray(result.window_scores, dtype=np.float32), box, result.n_done,
                            result.n_total)
    if result.error is not None:
        box = run.plan.regions[result.region_id].box
        return RegionFailed(result.region_id, box, result.error, result.n_done, result.n_total)
    dets = Detections.from_table(result.detections) if result.detections else None
    core = result.core
    return RegionDone(result.region_id, (int(core[0]), int(core[1]), int(core[2]), int(core[3])), result.n_done,
                      result.n_total, float(result.seconds), dets)


def finish(run: InferenceRun, seconds: float, status: RunStatus, error: BaseException | None = None) -> RunFinished:
    """The one finish path: the summary, and for a complete run the image scores and the store's "complete" mark.

    One rule for image scores: only a complete run has them (the mean over all of its windows); a mean over the
    windows a cancelled or partial run happened to reach would look like a whole-image answer and is not one.
    """
    new = run.n_done - run.n_done_at_start
    image_scores = run.store.mean_window_scores() if status == "complete" else None
    summary = RunSummary(
        store=str(run.store.path), regions_total=run.n_total, regions_done=run.n_done, regions_new=new,
        regions_skipped=len(run.plan.skipped), regions_failed=run.n_failed, cancelled=run.cancelled,
        regions_per_s=rate(new, seconds), device=str(run.device), precision=_precision_name(run.amp),
        regions_repaired=len(getattr(run.store, "repaired", ())),
        image_scores=None if image_scores is None else tuple(round(float(v), 5) for v in image_scores),
    )
    if status == "complete":
        try:
            if image_scores is not None:
                run.store.set_image_scores(image_scores, run.model.config.class_names.get("classification", []))
            run.store.finish(summary.to_dict())
        except Exception as err:
            log.exception("could not finish store %s", run.store.path)
            return RunFinished("failed", summary, err, image_scores)
    return RunFinished(status, summary, error, image_scores)


def predict(request: PredictRequest, on_event: Callable[[RunEvent], None] | None = None,
            model: XTModel | None = None, prepared: PreparedRun | None = None) -> RunSummary:
    """Prepare (unless given) and run to the end; returns the summary, raises the error that failed the run."""
    prepared = prepared or prepare(request, model=model)
    end: RunFinished | None = None
    for event in events(prepared):
        if on_event is not None:
            on_event(event)
        if isinstance(event, RunFinished):
            end = event
    assert end is not None  # events() always ends with RunFinished
    if end.error is not None:
        raise end.error
    return end.summary


def _precision_name(amp: object) -> str:
    """The precision a run actually used ("auto" resolved): fp32 without autocast, else its dtype's short name."""
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(amp), "fp32")
