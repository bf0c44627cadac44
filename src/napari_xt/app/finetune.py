"""Fine-tuning from napari layers (worker side of the dock's Fine-tune tab), as plain data in and out.

The tab hands over layers and a ``TrainOptions``; this module turns the layers into training data in the engine's
terms (level-0 pixels of the image the layers lie on) and runs them through the one training driver
(``app/training.py``, which ``napari-xt train`` uses too) — importing torch only inside the calls, so the widget
stays torch-free and the viewer never waits for it.

The interactive loop's second half lives here too: ``preview_events`` runs the model just trained on the regions in
view through the one run driver (a plan restricted to the view by its ROI, nearest the view's centre first), into a
throw-away result store in the user cache that the tab shows as a Labels layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._compat import keep_triton_out_without_cuda
from ..train.events import CancelHandle
from ..train.options import TrainOptions
from .areas import items_per_area
from .events import RunEvent
from .layers import layer_to_large_image, shapes_to_roi, unique_store_path, world_to_level0
from .previews import claim_preview, preview_folder, sweep_stale_previews
from .training import TrainEvent, TrainHandle, train_events

if TYPE_CHECKING:
    from ..train import DetectionAnnotations, SegmentationLabels
    from ..train.polygons import PolygonLabels


@dataclass
class FinetuneRequest:
    """What the tab asks for: the layers (read in the worker; nothing here is a Qt object) and the run's options
    (``options.description`` empty: the driver writes which layer it was fine-tuned on, and from which model)."""

    image_layer: Any  # napari layers, read duck-typed (this module imports neither napari nor Qt)
    labels_layer: Any = None
    points_layer: Any = None
    area_layer: Any = None  # Shapes: where the points annotation is complete
    shapes_layer: Any = None  # Shapes: polygons / rectangles / ellipses whose class comes from a "class" feature
    shape_class: int = 1  # the class of shapes without a "class" feature
    zero_is_unlabelled: bool = True
    options: TrainOptions = field(default_factory=lambda: TrainOptions(out=""))


def labels_from_layer(layer: Any, image_shape: tuple[int, int], zero_is_unlabelled: bool = True
                      ) -> SegmentationLabels:
    """A Labels layer over the image -> ``SegmentationLabels`` (class names from its ``class`` feature if any)."""
    from ..train import SegmentationLabels

    data = list(layer.data) if getattr(layer, "multiscale", False) else [layer.data]
    names: list[str] = []
    features = getattr(layer, "features", None)
    if features is not None and "class" in getattr(features, "columns", []):
        names = [str(v) for v in features["class"]]
    colors = []
    if names:
        colors = [[round(255 * c) for c in layer.get_color(i)[:3]] for i in range(len(names))]
    return SegmentationLabels.from_array(data, image_shape, ignore=0 if zero_is_unlabelled else -1,
                                         class_names=names, class_colors=colors)


def points_from_layer(points: Any, image_layer: Any, area_layer: Any = None) -> DetectionAnnotations:
    """A Points layer -> ``DetectionAnnotations`` in level-0 px (class from a ``class`` feature, size from the
    point size, which napari gives in data units)."""
    from ..train import DetectionAnnotations

    coords = np.asarray(points.data, float)
    if coords.ndim != 2 or len(coords) == 0:
        raise ValueError(f"the points layer {points.name!r} has no points")
    world = np.array([points.data_to_world(c) for c in coords])
    level0 = np.array([world_to_level0(image_layer, p[-2:]) for p in world])
    scale = float(np.mean(np.abs(points.scale[-2:])))
    img_scale = float(np.mean(np.abs(image_layer.scale[-2:])))
    size = np.asarray(points.size, float).reshape(len(coords), -1).mean(1) * scale / img_scale
    features = getattr(points, "features", None)
    if features is not None and "class" in getattr(features, "columns", []):
        labels = [str(v) for v in features["class"]]
    else:
        labels = ["object"] * len(coords)
    names = sorted(set(labels))
    cls = np.array([names.index(v) for v in labels])
    area = shapes_to_roi(area_layer, image_layer) if area_layer is not None else None
    return DetectionAnnotations(level0[:, 0], level0[:, 1], size, size, cls, names, area=area)


def polygons_from_shapes(shapes: Any, image_layer: Any, image_shape: tuple[int, int], default_class: int = 1,
                         class_names: list[str] | None = None) -> PolygonLabels:
    """A Shapes layer -> lazily rasterised :class:`~napari_xt.train.polygons.PolygonLabels` in level-0 px.

    Polygons, rectangles and ellipses are areas (an ellipse becomes a 64-point ring); paths and lines enclose
    nothing and are skipped (counted in ``skipped``). A shape's class is its ``class`` feature: a number is a class
    id, a name is looked up in ``class_names`` (else the names found are numbered from 1, as in QuPath files);
    without the feature every shape is ``default_class``. Later shapes are drawn over earlier ones.
    """
    from ..train import AnnotationError
    from ..train.polygons import PolygonLabels, ellipse_ring

    features = getattr(shapes, "features", None)
    column = (list(features["class"]) if features is not None and "class" in getattr(features, "columns", [])
              else [default_class] * len(shapes.data))
    numeric = all(_is_int(v) for v in column)
    values: list[Any] = [int(v) for v in column] if numeric else [str(v) for v in column]
    rings: list[tuple[Any, np.ndarray]] = []
    skipped: dict[str, int] = {}
    for data, kind, value in zip(shapes.data, shapes.shape_type, values, strict=False):
        verts = np.asarray(data, float)
        if kind == "ellipse":
            verts = ellipse_ring(verts)
        elif kind not in ("polygon", "rectangle") or len(verts) < 3:
            skipped[f"{kind} shape"] = skipped.get(f"{kind} shape", 0) + 1
            continue
        world = np.array([shapes.data_to_world(v) for v in verts])
        level0 = np.array([world_to_level0(image_layer, p[-2:]) for p in world])  # (y, x)
        rings.append((value, level0[:, ::-1]))  # PolygonLabels keeps x, y as QuPath writes them
    if not rings:
        raise AnnotationError(f"the Shapes layer {shapes.name!r} has no polygon, rectangle or ellipse")
    polygons: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
    if numeric:
        top = max(int(v) for v, _ in rings)
        if min(int(v) for v, _ in rings) < 1:
            raise AnnotationError(f"the Shapes layer {shapes.name!r}: class ids start at 1 (0 is 'not annotated')")
        names = list(class_names) if class_names and len(class_names) > top else (
            ["unlabelled"] + [f"class {i}" for i in range(1, top + 1)])
        polygons = [(int(v), ring, []) for v, ring in rings]  # napari shapes have no holes
    else:
        names = list(class_names) if class_names else ["unlabelled"] + sorted({str(v) for v, _ in rings})
        lookup = {n: i for i, n in enumerate(names) if i}
        for v, ring in rings:
            if v in lookup:
                polygons.append((lookup[v], ring, []))
            else:
                skipped[v] = skipped.get(v, 0) + 1
        if not polygons:
            raise AnnotationError(f"the Shapes layer {shapes.name!r}: no shape has one of the classes "
                                  f"{', '.join(names[1:])}")
    return PolygonLabels(polygons, image_shape, names, skipped)


def _is_int(value: Any) -> bool:
    try:
        return float(value) == int(float(value))
    except (TypeError, ValueError):
        return False


def segmentation_from_layers(request: FinetuneRequest, image_shape: tuple[int, int]) -> SegmentationLabels | None:
    """The request's segmentation targets: painted labels, shapes, or shapes drawn over the paint."""
    from ..train.polygons import LayeredLabels

    paint = (labels_from_layer(request.labels_layer, image_shape, request.zero_is_unlabelled)
             if request.labels_layer is not None else None)
    if request.shapes_layer is None:
        return paint
    shapes = polygons_from_shapes(request.shapes_layer, request.image_layer, image_shape, request.shape_class,
                                  paint.class_names if paint is not None else None)
    return shapes if paint is None else LayeredLabels(paint, shapes)


def training_events(request: FinetuneRequest, handle: TrainHandle | None = None) -> Iterator[TrainEvent]:
    """Training data from the layers, then the training driver's events; ``handle.cancel()`` stops it."""
    keep_triton_out_without_cuda()  # before ..train imports timm: this worker may be the process's first model path
    from ..train import TrainingImage

    if request.labels_layer is None and request.points_layer is None and request.shapes_layer is None:
        raise ValueError("Choose a Labels layer or a Shapes layer (segmentation) or a Points layer (detection) with "
                         "your annotations.")
    image = layer_to_large_image(request.image_layer)
    shape = tuple(image.levels[0].shape[:2])
    seg = segmentation_from_layers(request, (int(shape[0]), int(shape[1])))
    det = (points_from_layer(request.points_layer, request.image_layer, request.area_layer)
           if request.points_layer is not None else None)
    item = TrainingImage(image, segmentation=seg, detection=det, name=str(request.image_layer.name))
    # a copy: the trainer settles some options (the freeze default) and the request stays what the tab asked
    options = replace(request.options, description=request.options.description or _description(request))
    items = items_per_area(item, request.area_layer, request.image_layer)  # one per complete area
    yield from train_events(items, options, handle)


def _description(request: FinetuneRequest) -> str:
    """What the checkpoint says about itself, with its lineage: the model it continued from, if any."""
    text = f"fine-tuned in napari on {request.image_layer.name}"
    base = request.options.base
    return f"{text}, continued from {Path(base).name}" if base else text


# -- the prediction overlay of the interactive loop ---------------------------------------------------------------
@dataclass(frozen=True)
class PreviewReady:
    """The preview's store exists: where it is, how it lies over the image and how to draw it; the run's own
    events follow."""

    store: str
    downsample: float  # level-0 px per analysis px
    box: tuple[float, float, float, float]  # level-0 (y0, x0, y1, x1) predicted
    regions: int
    class_names: list[str]
    class_colors: list[list[int]]
    detection: bool
    detection_names: list[str]


@dataclass
class PreviewRequest:
    """Run ``model`` (the checkpoint just saved) on the regions of ``view`` (level-0 (y0, x0, y1, x1))."""

    image_layer: Any
    model: str
    view: tuple[float, float, float, float]
    window_size: int = 2
    max_regions: int = 64  # a zoomed-out view of a whole slide runs this many regions around its centre, not all
    folder: str | None = None  # where preview stores go (default: previews/ in napari-xt's user cache)
    device: str = "auto"


def capped_view(view: tuple[float, float, float, float], image_shape: tuple[int, int], region_level0: float,
                max_regions: int) -> tuple[float, float, float, float]:
    """The view clipped to the image and, when it spans more than ``max_regions`` regions (of ``region_level0``
    level-0 px), shrunk about its centre to a square of that many regions."""
    y0, x0, y1, x1 = view
    h, w = image_shape
    y0, x0, y1, x1 = max(0.0, y0), max(0.0, x0), min(float(h), y1), min(float(w), x1)
    if y1 <= y0 or x1 <= x0:  # the view is off the image: its nearest corner of the image
        cy, cx = min(max((view[0] + view[2]) / 2, 0.0), h), min(max((view[1] + view[3]) / 2, 0.0), w)
        y0, y1, x0, x1 = cy - 1, cy + 1, cx - 1, cx + 1
    if (y1 - y0) * (x1 - x0) > max_regions * region_level0 ** 2:
        # a box k regions wide can touch k + 1 columns of them: (sqrt(max) - 1) regions wide touches at most max
        half = max(1.0, (np.sqrt(max_regions) - 1) * region_level0 / 2)
        cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
        hy, hx = min(half, (y1 - y0) / 2), min(half, (x1 - x0) / 2)
        y0, y1, x0, x1 = cy - hy, cy + hy, cx - hx, cx + hx
    return (float(y0), float(x0), float(y1), float(x1))


def preview_events(request: PreviewRequest, cancel: CancelHandle | None = None
                   ) -> Iterator[PreviewReady | RunEvent]:
    """Yield :class:`PreviewReady` (where the store is and how to show it), then the run's events.

    The plan is the model's own (its pixel size, region size) with the training window size, no tissue mask (the
    user looks there) and an ROI of the view; windows nearest the view's centre run first, so the first overlay
    arrives after one region. ``cancel.cancel()`` cancels the run (at once when it comes while preparing).
    """
    keep_triton_out_without_cuda()
    from . import driver, session
    from .request import PlanOptions, PredictRequest, RunOptions

    model = driver.load_model(request.model)
    image = layer_to_large_image(request.image_layer)
    cy, cx = (request.view[0] + request.view[2]) / 2, (request.view[1] + request.view[3]) / 2
    folder = preview_folder(request.folder)
    folder.mkdir(parents=True, exist_ok=True)
    sweep_stale_previews(request.folder)  # stores left by a napari that closed or crashed mid-preview
    out = unique_store_path(folder / f"{Path(request.model).stem}.xt.zarr")
    claim_preview(out)
    predict = PredictRequest(image=f"layer:{request.image_layer.name}", model=request.model, out=str(out),
                             plan=PlanOptions(window_size=request.window_size, use_mask=False, focus=(cy, cx)),
                             run=RunOptions(device=request.device, batch_size=2, first_region_alone=True,
                                             low_priority=True))
    whole = driver.resolve(predict, model=model, image=image)  # the model's analysis level and region grid
    f = whole.plan.downsample_to_level0
    shape = (int(image.levels[0].shape[0]), int(image.levels[0].shape[1]))
    box = capped_view(request.view, shape, whole.plan.region_size * f, request.max_regions)
    predict = predict.with_plan(roi=box)
    prepared = driver.prepare(predict, inputs=driver.resolve(predict, model=model, image=image))
    if cancel is not None:
        cancel.on_cancel(prepared.run.cancel)
    cfg = model.config
    yield PreviewReady(store=str(out), downsample=float(f), box=box, regions=prepared.run.n_total,
                       class_names=list(cfg.class_names.get("segmentation", [])),
                       class_colors=[list(c) for c in cfg.class_colors.get("segmentation", [])],
                       detection="detection" in cfg.heads,
                       detection_names=list(cfg.class_names.get("detection", [])))
    yield from session.stream(prepared)
