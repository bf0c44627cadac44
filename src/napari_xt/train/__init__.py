"""Fine-tuning xT on the user's own annotations, memory-bounded (no Qt): see docs/train.md.

``Trainer(images, TrainOptions(out=...)).fit()`` trains on :class:`TrainingImage` items carrying
:class:`SegmentationLabels` (or QuPath polygons, :class:`PolygonLabels`), :class:`DetectionAnnotations` and/or
:class:`ImageClass`, and keeps the best checkpoint
(napari-xt ``.safetensors`` with its full config) at ``out``. ``napari-xt train`` and the dock's Fine-tune tab call it.
"""

from __future__ import annotations

from .annotation_files import points_from_file
from .annotations import (
    AnnotationError,
    DetectionAnnotations,
    ImageClass,
    SegmentationLabels,
    image_classes_from_csv,
    points_from_csv,
    points_from_geojson,
)
from .data import IGNORE, Augment, TrainingImage
from .loop import Trainer, TrainOptions
from .polygons import PolygonLabels

__all__ = [
    "IGNORE",
    "AnnotationError",
    "Augment",
    "DetectionAnnotations",
    "ImageClass",
    "PolygonLabels",
    "SegmentationLabels",
    "TrainOptions",
    "Trainer",
    "TrainingImage",
    "image_classes_from_csv",
    "points_from_csv",
    "points_from_file",
    "points_from_geojson",
]
