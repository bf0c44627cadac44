"""Fine-tuning xT on the user's own annotations, memory-bounded (no Qt): see docs/train.md.

``Trainer(images, TrainOptions(out=...)).fit()`` trains on :class:`TrainingImage` items carrying
:class:`SegmentationLabels` (or QuPath polygons, :class:`PolygonLabels`), :class:`DetectionAnnotations` and/or
:class:`ImageClass`, and keeps the best checkpoint
(napari-xt ``.safetensors`` with its full config) at ``out``. ``napari-xt train`` and the dock's Fine-tune tab call it
through ``app/training.py``.

The names below load on first use (PEP 562): ``napari_xt.train.options`` and ``napari_xt.train.events`` are
torch-free, and importing them must not pull the loop (and torch) in through this package's ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from .data import IGNORE, TrainingImage
    from .loop import Trainer
    from .options import Augment, TrainOptions
    from .polygons import PolygonLabels

#: public name -> the submodule that defines it
_HOMES = {
    "points_from_file": "annotation_files",
    "AnnotationError": "annotations",
    "DetectionAnnotations": "annotations",
    "ImageClass": "annotations",
    "SegmentationLabels": "annotations",
    "image_classes_from_csv": "annotations",
    "points_from_csv": "annotations",
    "points_from_geojson": "annotations",
    "IGNORE": "data",
    "TrainingImage": "data",
    "Trainer": "loop",
    "Augment": "options",
    "TrainOptions": "options",
    "PolygonLabels": "polygons",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


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
