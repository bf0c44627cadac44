"""The model's uncertainty over an image, measured by the one run driver: the engine streams the regions as for any
prediction, into a throw-away result store, and each region is scored the moment it is stored.

Why the driver and not a second inference path: the plan (analysis level, region grid, context windows, tissue
mask, ROI), the reading, normalisation and batching are the ones a prediction uses, so the doubt measured is the
doubt of the predictions the user would see, and the image is never loaded whole. Segmentation runs with the
store's probability maps on (uint8) and reads each region's core back; detection lowers the score threshold to the
bottom of the undecided band so the peaks just below the model's threshold reach the region events.

torch-free at import (the dock imports this on its main thread); the driver imports torch in the worker.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._compat import keep_triton_out_without_cuda
from ..engine.options import Roi, score_threshold_for
from .events import RegionDone, RunEvent, RunFinished
from .request import PlanOptions, PredictRequest, RunOptions
from .suggest import (
    Suggestions,
    SuggestOptions,
    balanced_uncertainty,
    class_entropy,
    detection_uncertainty,
    segmentation_uncertainty,
    suggestions_from_regions,
)

if TYPE_CHECKING:
    from ..io import LargeImage
    from ..model import XTModel

__all__ = ["SuggestionError", "suggest", "suggestion_events"]


class SuggestionError(ValueError):
    """The model cannot make suggestions (a classification-only model): one sentence for the CLI and the dock."""


def suggestion_events(image: str, model: str, options: SuggestOptions | None = None, *, roi: Roi | None = None,
                      image_obj: LargeImage | None = None, model_obj: XTModel | None = None,
                      window_size: int | None = None, use_mask: bool = True, device: str = "auto",
                      batch_size: int = 4, folder: str | Path | None = None, spare_a_core: bool = False,
                      holder: dict | None = None, view: Roi | None = None,
                      max_regions: int | None = None) -> Iterator[RunEvent | Suggestions]:
    """Run ``model`` over ``image`` (or ``roi``), score every region, and yield the run's events, then the
    :class:`Suggestions` last. ``image_obj``/``model_obj`` skip opening/loading (the dock's layer, the benchmark's
    model in memory); ``window_size`` defaults to the plan's; ``holder["run"]`` lets a caller cancel. With
    ``max_regions`` and a ``view`` (and no ``roi``): the whole image when its plan has at most ``max_regions``
    regions, else only the view (a whole slide is not run after every Train)."""
    options = options or SuggestOptions()
    options.validate()
    keep_triton_out_without_cuda()
    from . import driver

    if model_obj is None:
        model_obj = driver.load_model(model)
    cfg = model_obj.config
    task = "segmentation" if "segmentation" in cfg.heads else ("detection" if "detection" in cfg.heads else None)
    if task is None:
        raise SuggestionError(f"{model}: suggestions need a segmentation or detection head; this model only "
                              "classifies whole images")
    threshold = score_threshold_for(None, cfg.score_threshold) if task == "detection" else None
    floor = max(1e-3, threshold * (1 - options.band)) if threshold is not None else None
    tmp = Path(tempfile.mkdtemp(prefix="suggest-", dir=str(folder) if folder else None))
    plan = PlanOptions(roi=roi, use_mask=use_mask, window_size=window_size or PlanOptions().window_size)
    request = PredictRequest(image=image, model=model, out=str(tmp / "uncertainty.xt.zarr"), plan=plan,
                             run=RunOptions(device=device, batch_size=batch_size, probabilities=task == "segmentation",
                                            score_threshold=floor, max_detections_per_region=2000))
    view_only = False
    try:
        inputs = driver.resolve(request, model=model_obj, image=image_obj)
        if roi is None and view is not None and max_regions is not None and len(inputs.plan.regions) > max_regions:
            roi, view_only = view, True
            request = replace(request, plan=replace(plan, roi=roi))
            inputs = driver.resolve(request, model=model_obj, image=inputs.image)
        prepared = driver.prepare(request, inputs=inputs)
        if holder is not None:
            holder["run"] = prepared.run
        store, plan_ = prepared.run.store, inputs.plan
        values: dict[int, float] = {}
        by_class: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # balanced: entropy sums and counts per class
        end: RunFinished | None = None
        for event in driver.events(prepared, spare_a_core=spare_a_core):
            if isinstance(event, RegionDone):
                if task == "segmentation" and options.measure == "balanced":
                    by_class[event.region_id] = class_entropy(_core_probabilities(store, event))
                else:
                    values[event.region_id] = _region_value(event, store, task, options, threshold)
            elif isinstance(event, RunFinished):
                end = event
            yield event
        if end is not None and end.error is not None:
            raise end.error
        if by_class:  # the class weights need every region's counts: the regions' values come once all have run
            keys = sorted(by_class)
            scores = balanced_uncertainty(np.stack([by_class[i][0] for i in keys]),
                                          np.stack([by_class[i][1] for i in keys]))
            values = {i: float(v) for i, v in zip(keys, scores, strict=True)}
        f = plan_.downsample_to_level0
        ids = sorted(values)
        regions = [plan_.regions[i] for i in ids]
        shape0 = (int(plan_.image_shape[0]), int(plan_.image_shape[1]))
        cores = np.array([[r.core[0] * f, r.core[1] * f, min(r.core[2] * f, shape0[0]), min(r.core[3] * f, shape0[1])]
                          for r in regions], dtype=np.float64).reshape(-1, 4)
        result = suggestions_from_regions(
            np.array([r.row for r in regions], dtype=np.int64), np.array([r.col for r in regions], dtype=np.int64),
            cores, np.array([values[i] for i in ids], dtype=np.float64), options, task, shape0,
            heat_step=max(1.0, plan_.region_size * f / 8), threshold=threshold,
            calibrated=cfg.score_threshold is not None)
        result.georef = inputs.image.georef
        result.info.update({"cancelled": bool(end is not None and end.status == "cancelled"),
                            "region_size_level0": plan_.region_size * f, "window_size": plan_.window_size,
                            "scope": "view" if roi is not None and view_only else ("roi" if roi is not None
                                                                                  else "image")})
        yield result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _region_value(event: RegionDone, store: Any, task: str, options: SuggestOptions,
                  threshold: float | None) -> float:
    if task == "detection":
        scores = event.detections.score if event.detections is not None else np.zeros(0)
        return detection_uncertainty(scores, float(threshold or 0.0), options.band)
    return segmentation_uncertainty(_core_probabilities(store, event), options.measure)


def _core_probabilities(store: Any, event: RegionDone) -> np.ndarray:
    y0, x0, y1, x1 = event.core  # analysis px: the store's probability maps are at the analysis level
    return np.asarray(store.probabilities[:, y0:y1, x0:x1])


def suggest(image: str, model: str, options: SuggestOptions | None = None, **kwargs: Any) -> Suggestions:
    """:func:`suggestion_events` driven to the end: the suggestions (raises what failed the run)."""
    result: Suggestions | None = None
    for item in suggestion_events(image, model, options, **kwargs):
        if isinstance(item, Suggestions):
            result = item
    assert result is not None  # the generator ends with the suggestions or raises
    return result


def layer_suggestion_events(image_layer: Any, model: str, options: SuggestOptions, *,
                            view: tuple[float, float, float, float] | None = None, window_size: int | None = None,
                            holder: dict | None = None, max_regions: int | None = None
                            ) -> Iterator[RunEvent | Suggestions]:
    """The dock's worker: :func:`suggestion_events` over a napari image layer (all bands of the file it came from),
    the whole image or only ``view`` (level-0 box), one CPU core left to the viewer. With ``max_regions``: the
    whole image when it has at most that many regions, else the view."""
    from .layers import layer_to_large_image

    image = layer_to_large_image(image_layer)
    if max_regions is not None:
        yield from suggestion_events(f"layer:{image_layer.name}", model, options, view=view, max_regions=max_regions,
                                     image_obj=image, window_size=window_size, spare_a_core=True, holder=holder)
        return
    yield from suggestion_events(f"layer:{image_layer.name}", model, options, roi=view, image_obj=image,
                                 window_size=window_size, spare_a_core=True, holder=holder)
