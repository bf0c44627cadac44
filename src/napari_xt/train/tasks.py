"""Heads and class names implied by the annotations: segmentation from label images, detection from points,
classification from image classes (all images must agree on the class lists)."""

from __future__ import annotations

from .annotations import AnnotationError
from .data import TrainingImage
from .model_setup import default_colors


def tasks_from_annotations(images: list[TrainingImage], seg_names: list[str] | None) -> tuple[dict, dict, dict]:
    """Heads and class names implied by the annotations (all images must agree on the class lists)."""
    tasks, names, colors = {}, {}, {}
    segs = [i.segmentation for i in images if i.segmentation is not None]
    if segs:
        given = seg_names or next((s.class_names for s in segs if s.class_names), None)
        n = len(given) if given else max(s.num_classes() for s in segs)
        if n < 2:
            raise AnnotationError("segmentation needs at least 2 classes in the labels (or class names given)")
        tasks["segmentation"] = {"num_classes": n}
        names["segmentation"] = list(given) if given else ["unlabelled"] + [f"class {i}" for i in range(1, n)]
        cols = next((s.class_colors for s in segs if s.class_colors), None)
        colors["segmentation"] = [list(c) for c in cols] if cols and len(cols) == n else default_colors(n)
    dets = [i.detection for i in images if i.detection is not None]
    if dets:
        det_names = dets[0].class_names
        if any(d.class_names != det_names for d in dets):
            raise AnnotationError("every image's points must use the same classes")
        tasks["detection"] = {"num_classes": len(det_names)}
        names["detection"] = list(det_names)
        colors["detection"] = dets[0].class_colors or default_colors(len(det_names) + 1)[1:]
    labels = [i.image_class for i in images if i.image_class is not None]
    if labels:
        if len(labels) != len(images):
            raise AnnotationError("classification needs a class for every training image")
        tasks["classification"] = {"num_classes": len(labels[0].class_names)}
        names["classification"] = list(labels[0].class_names)
    if not tasks:
        raise AnnotationError("no annotations: give labels, points or image classes")
    return tasks, names, colors

