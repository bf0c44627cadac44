"""One entry point for a whole prediction (CLI and widget): open, plan, prepare the store, run, summarise.

``prepare_run`` does everything that can fail on bad input *before* any work starts (unreadable image, incompatible
checkpoint, a store made by another model), so errors arrive as one clear sentence and nothing half-written is left.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from .plan import make_plan
from .normalise import Normaliser
from .run import InferenceRun, RegionResult, RunOptions, autocast_dtype, resolve_device
from .store import ResultStore, StoreSpec, is_store


@dataclass
class PredictRequest:
    image: str
    model: str
    out: str
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 4
    mpp: float | None = None
    level: int | None = None
    region_size: int | None = None
    overlap: int = 0
    context: str = "window"
    window_size: int = 4
    order: str = "row-major"
    roi: object = None
    use_mask: bool = True
    probabilities: bool = False
    resume: bool = False
    overwrite: bool = False
    focus: tuple[float, float] | None = None


def image_fingerprint(image) -> str:
    """Cheap identity of an image: path name, level shapes, dtype and the bytes of its smallest level's corner."""
    h = hashlib.sha256()
    h.update(Path(str(image.path)).name.encode())
    h.update(json.dumps([list(lvl.shape) for lvl in image.levels]).encode())
    h.update(str(image.levels[0].dtype).encode())
    low = image.levels[-1]
    h.update(bytes(memoryview(low[:64, :64].compute().copy())))
    return h.hexdigest()[:16]


def model_checksum(model) -> str:
    """Identity of a model: its config and a digest of its weights (so two random inits differ)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        flat = tensor.detach().float().flatten()
        h.update(flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def prepare_run(request: PredictRequest, model=None, image=None) -> InferenceRun:
    """Open everything and build the run; raises ValueError/ImageReadError/CheckpointError with clear messages."""
    from ..io import open_image
    from ..model import load_model

    if image is None:
        image = open_image(request.image)
    if model is None:
        model = load_model(request.model)
    cfg = model.config
    # everything that can reject the request is checked before a store exists on disk
    autocast_dtype(request.precision, resolve_device(request.device))
    Normaliser.from_config(cfg, image)
    mpp = request.mpp if request.mpp is not None else (cfg.pixel_size if request.level is None else None)
    if mpp is not None and not image.pixel_size:
        mpp = None  # an image without a pixel size is analysed at the requested level (or 0)
    plan = make_plan(
        image, region_size=request.region_size or cfg.region_size, overlap=request.overlap,
        target_pixel_size=mpp, level=request.level, context=request.context, window_size=request.window_size,
        order=request.order, use_mask=request.use_mask, roi=request.roi, focus=request.focus,
    )
    identity = {
        "model_checksum": model_checksum(model),
        "image_fingerprint": image_fingerprint(image),
        "plan_checksum": plan.checksum(),
    }
    out = Path(request.out)
    if request.resume and is_store(out):
        store = ResultStore.open_for_resume(out, identity)
    else:
        seg = cfg.heads.get("segmentation", {})
        names = cfg.class_names.get("segmentation", [])
        spec = StoreSpec(
            shape=plan.analysis_shape, num_classes=int(seg.get("num_classes", 0)), class_names=list(names),
            class_colors=[list(c) for c in cfg.class_colors.get("segmentation", [])],
            region_count=len(plan.regions), probabilities=request.probabilities,
            downsample_to_level0=plan.downsample_to_level0,
        )
        meta = {
            **identity,
            "model": request.model,
            "model_config": cfg.to_dict(),
            "image": os.path.abspath(str(request.image)),
            "image_shape": list(image.levels[0].shape),
            "image_pixel_size": list(image.pixel_size) if image.pixel_size else None,  # level 0, (y, x)
            "image_pixel_unit": image.pixel_unit if image.pixel_size else None,
            "plan": {**{k: v for k, v in asdict(plan).items() if k != "regions"}, "windows": plan.windows_by_id()},
            "started": _dt.datetime.now(_dt.UTC).isoformat(),
            "software": f"napari-xt {__version__}",
        }
        store = ResultStore.create(out, spec, meta, overwrite=request.overwrite)
    options = RunOptions(device=request.device, precision=request.precision, batch_size=request.batch_size,
                         probabilities=request.probabilities)
    return InferenceRun(model, image, plan, store, options)


def predict(request: PredictRequest, on_start: Callable[[int, int], None] | None = None,
            on_region: Callable[[RegionResult], None] | None = None, run: InferenceRun | None = None) -> dict:
    """Run to the end (or cancel) and return the summary that ``--json`` prints."""
    run = run or prepare_run(request)
    done_before = run.n_done
    if on_start:
        on_start(run.n_total, done_before)
    t0 = time.perf_counter()
    for result in run:
        if on_region:
            on_region(result)
    seconds = time.perf_counter() - t0
    new = run.n_done - done_before
    summary = {
        "store": str(run.store.path),
        "regions_total": run.n_total,
        "regions_done": run.n_done,
        "regions_new": new,
        "regions_skipped": len(run.plan.skipped),
        "regions_failed": run.n_failed,
        "cancelled": run.cancelled,
        "regions_per_s": round(new / seconds, 3) if seconds > 0 else 0.0,
        "device": str(run.device),
        "precision": run.options.precision,
    }
    windows = run.store.window_scores()
    if windows and not run.cancelled:
        # image-level scores: the mean over context windows (global mode: the one window's scores)
        image_scores = np.mean(np.stack(list(windows.values())), axis=0)
        run.store.set_image_scores(image_scores, run.model.config.class_names.get("classification", []))
        summary["image_scores"] = [round(float(v), 5) for v in image_scores]
    if not run.cancelled and run.n_done == run.n_total:
        run.store.finish(summary)
    return summary
