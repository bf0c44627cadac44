"""The Run panel's fields -> a :class:`~napari_xt.app.request.PredictRequest` (what Run, Resume and the encoder
time estimate all start from), or the one sentence saying what is missing."""

from __future__ import annotations

from typing import Any

from ..app.layers import layer_path, shapes_to_roi, world_to_level0
from ..app.request import PlanOptions, PredictRequest, RunOptions
from . import _fields as F


def build_request(dock: Any, resume: bool) -> tuple[PredictRequest, Any] | str:
    """(request, image layer) from ``dock``'s fields, or why not (no image, no model, an empty ROI layer)."""
    layer, info = dock.image.value, dock._infos.get(dock.model.value)
    if layer is None:
        return "There is no image to analyse: open an image (File > Open) or a sample first."
    if info is None:
        return "Pick a model first (a preset, a checkpoint from the models folder, or Browse…)."
    roi = None
    if dock.roi.value is not None:
        roi = shapes_to_roi(dock.roi.value, layer)
        if roi is None:
            return (f"The Shapes layer {dock.roi.value.name!r} has no polygon or rectangle; draw one or choose "
                    "'whole image'.")
    level = dock.resolution.value
    plan = PlanOptions(
        mpp=(dock.mpp.value or None) if level is None else None, level=level,
        region_size=dock.region_size.value, overlap=dock.overlap.value, context=dock.context.value,
        window_size=dock.window_size.value, order=dock.order.value,
        roi=None if roi is None else tuple((float(y), float(x)) for y, x in roi), use_mask=dock.use_mask.value,
        focus=world_to_level0(layer, F.camera_center(dock.viewer)),
    )
    run = RunOptions(
        device=dock.device.value or "cpu", precision=dock.precision.value, batch_size=dock.batch_size.value,
        prefetch=dock.prefetch.value, read_workers=dock.read_workers.value,
        score_threshold=float(dock.min_score.value), max_detections_per_region=dock.max_detections.value,
        probabilities=dock.probabilities.value,
        first_region_alone=True,  # the first overlay shows sooner
        low_priority=True,  # the run's threads leave the viewer a core: no stalls while regions stream in
    )
    request = PredictRequest(image=layer_path(layer) or f"layer:{layer.name}", model=info.key,
                             out=str(dock.out.value), plan=plan, run=run, resume=resume)
    return request, layer
