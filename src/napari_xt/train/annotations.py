"""What the user annotated, in a form the trainer can sample region by region without loading it whole.

Three kinds, one per task:

* :class:`SegmentationLabels` — a label image (a file, a napari Labels layer, a dask/zarr array or a pyramid of them)
  over the image. Sparse annotation is the normal case: pixels equal to ``ignore`` (0 by default, napari's "not
  painted") are *unlabelled* and never enter the loss; every other value is a class id, so what a user paints is
  what the model learns to output. Dense ground truth with a background class 0 uses ``ignore=255`` instead.
* :class:`DetectionAnnotations` — object centres (and sizes when known) in level-0 pixels, from a Points/Shapes
  layer, a CSV or a QuPath GeoJSON file; optionally the area where the annotation is complete (outside it, a missing
  point is not a negative).
* :class:`ImageClass` — one class for the whole image (classification).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:
    from ..engine.options import Roi


class AnnotationError(ValueError):
    """Annotations that cannot be used as given; the message names the file or layer and says why."""


# -- segmentation --------------------------------------------------------------------------------------------------
@dataclass
class SegmentationLabels:
    """A (possibly multiscale) label image covering the training image.

    ``levels`` are 2D array-likes (numpy, dask, zarr), finest first; ``downsamples`` give level-0 image px per label
    px of each level (they need not be integers: a label image painted on a 2x smaller level is fine).
    """

    levels: list
    downsamples: list[float]
    ignore: int = 0
    class_names: list[str] = field(default_factory=list)
    class_colors: list[list[int]] = field(default_factory=list)

    @classmethod
    def from_array(cls, data, image_shape: tuple[int, int], ignore: int = 0, **kwargs) -> SegmentationLabels:
        """``data``: one 2D array or a list of them (multiscale, finest first) over an image of ``image_shape``."""
        levels = list(data) if isinstance(data, (list, tuple)) else [data]
        levels = [_as_2d(level) for level in levels]
        if not levels:
            raise AnnotationError("the label data is empty")
        ds = [image_shape[0] / level.shape[0] for level in levels]
        ds_x = [image_shape[1] / level.shape[1] for level in levels]
        for a, b, level in zip(ds, ds_x, levels, strict=True):
            if a < 0.99 or abs(a - b) > 0.02 * max(a, b) + 0.01:
                raise AnnotationError(
                    f"a label image of {level.shape[0]} x {level.shape[1]} px does not cover the "
                    f"{image_shape[0]} x {image_shape[1]} image with square pixels: paint labels on the image itself "
                    "or on one of its pyramid levels")
        return cls(levels, ds, ignore=ignore, **kwargs)

    @classmethod
    def from_file(cls, path, image_shape: tuple[int, int], ignore: int = 0, **kwargs) -> SegmentationLabels:
        """A label TIFF/OME-TIFF (any pyramid), OME-Zarr or ``.npy`` file."""
        path = Path(path)
        if not path.exists():
            raise AnnotationError(f"{path}: no such label file")
        if path.suffix.lower() == ".npy":
            return cls.from_array(np.load(path, mmap_mode="r"), image_shape, ignore, **kwargs)
        from ..io import ImageReadError, open_image

        try:
            img = open_image(path)
        except ImageReadError as err:
            raise AnnotationError(f"{path}: cannot read the label image ({err})") from None
        if img.levels[0].shape[-1] != 1:
            raise AnnotationError(f"{path}: a label image has one channel of integer class ids, this one has "
                                  f"{img.levels[0].shape[-1]}")
        if np.dtype(img.levels[0].dtype).kind not in "iu":
            raise AnnotationError(f"{path}: label images hold integer class ids, not {img.levels[0].dtype}")
        return cls.from_array([lvl[..., 0] for lvl in img.levels], image_shape, ignore, **kwargs)

    def read(self, box0: tuple[float, float, float, float], out_shape: tuple[int, int]) -> np.ndarray:
        """Labels of a level-0 box (may reach past the image; the outside is ``ignore``), nearest-sampled."""
        y0, x0, y1, x1 = box0
        want = (y1 - y0) / out_shape[0]  # level-0 px per output px
        i = max([k for k, d in enumerate(self.downsamples) if d <= want * 1.001] or [0])
        level, d = self.levels[i], self.downsamples[i]
        h, w = level.shape
        ly0, lx0 = math.floor(y0 / d), math.floor(x0 / d)
        ly1, lx1 = math.ceil(y1 / d), math.ceil(x1 / d)
        block = np.full((ly1 - ly0, lx1 - lx0), self.ignore, dtype=np.int64)
        sy0, sx0, sy1, sx1 = max(ly0, 0), max(lx0, 0), min(ly1, h), min(lx1, w)
        if sy1 > sy0 and sx1 > sx0:
            block[sy0 - ly0:sy1 - ly0, sx0 - lx0:sx1 - lx0] = np.asarray(level[sy0:sy1, sx0:sx1])
        ys = ((np.arange(out_shape[0]) + 0.5) * (y1 - y0) / out_shape[0] + y0) / d - ly0
        xs = ((np.arange(out_shape[1]) + 0.5) * (x1 - x0) / out_shape[1] + x0) / d - lx0
        ys = np.clip(ys.astype(np.int64), 0, block.shape[0] - 1)
        xs = np.clip(xs.astype(np.int64), 0, block.shape[1] - 1)
        return block[ys][:, xs]

    def coarse_annotated(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """(bool mask of annotated pixels on a coarse level, level-0 px per mask px): finds the windows worth a look."""
        i = next((k for k, lvl in enumerate(self.levels) if max(lvl.shape) <= max_side), len(self.levels) - 1)
        level, d = self.levels[i], self.downsamples[i]
        step = max(1, math.ceil(max(level.shape) / max_side))
        sample = np.asarray(level[::step, ::step])
        return sample != self.ignore, d * step

    def num_classes(self) -> int:
        """Classes the labels imply: the names given, else the largest id on a coarse look + 1."""
        if self.class_names:
            return len(self.class_names)
        mask, _ = self.coarse_annotated()
        i = next((k for k, lvl in enumerate(self.levels) if max(lvl.shape) <= 2048), len(self.levels) - 1)
        level = self.levels[i]
        step = max(1, math.ceil(max(level.shape) / 2048))
        values = np.asarray(level[::step, ::step])[mask]
        return int(values.max()) + 1 if values.size else 0


def _as_2d(level):
    shape = tuple(level.shape)
    if len(shape) == 3 and shape[-1] == 1:
        return level[..., 0]
    if len(shape) != 2:
        raise AnnotationError(f"a label image must be 2D (y, x); got shape {shape}")
    return level


# -- detection -----------------------------------------------------------------------------------------------------
@dataclass
class DetectionAnnotations:
    """Objects in level-0 px: centres ``y, x``, sizes ``h, w`` (NaN when only a point was marked), class ids.

    ``area`` (level-0 ``(y0, x0, y1, x1)`` or polygon ``[(y, x), ...]``) is where every object was marked; None means
    the whole image. Regions outside it are not used.
    """

    y: np.ndarray
    x: np.ndarray
    h: np.ndarray
    w: np.ndarray
    cls: np.ndarray
    class_names: list[str] = field(default_factory=lambda: ["object"])
    class_colors: list[list[int]] = field(default_factory=list)
    area: Roi | list[tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        self.y, self.x = np.asarray(self.y, float).reshape(-1), np.asarray(self.x, float).reshape(-1)
        n = len(self.y)
        self.h = np.broadcast_to(np.asarray(self.h, float), (n,)).copy()
        self.w = np.broadcast_to(np.asarray(self.w, float), (n,)).copy()
        self.cls = np.broadcast_to(np.asarray(self.cls, np.int64), (n,)).copy()
        if len(self.x) != n:
            raise AnnotationError(f"{n} y coordinates but {len(self.x)} x coordinates")
        if n and (self.cls.min() < 0 or self.cls.max() >= len(self.class_names)):
            raise AnnotationError(f"class ids must be 0..{len(self.class_names) - 1} for classes {self.class_names}")

    def __len__(self) -> int:
        return len(self.y)

    def in_box(self, box0) -> np.ndarray:
        y0, x0, y1, x1 = box0
        return np.flatnonzero((self.y >= y0) & (self.y < y1) & (self.x >= x0) & (self.x < x1))


def _class_ids(names: list[str], given: list[str] | None) -> tuple[np.ndarray, list[str]]:
    classes = list(given or [])
    for name in names:
        if name not in classes:
            if given:
                raise AnnotationError(f"class {name!r} is not one of the classes given: {', '.join(given)}")
            classes.append(name)
    classes = classes or ["object"]
    lookup = {n: i for i, n in enumerate(classes)}
    return np.array([lookup[n] for n in names], dtype=np.int64), classes


def points_from_csv(path, class_names: list[str] | None = None, scale: float = 1.0) -> DetectionAnnotations:
    """A CSV with a header naming ``x``/``y`` (level-0 px), optional ``width``/``height`` (or ``w``/``h``) and
    ``class`` columns. ``scale`` multiplies coordinates (e.g. the label layer's px size)."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AnnotationError(f"{path}: cannot read the points CSV ({err})") from None
    if not rows:
        raise AnnotationError(f"{path}: the points CSV has no rows")
    cols = {c.strip().lower(): c for c in rows[0] if c}
    for need in ("x", "y"):
        if need not in cols:
            raise AnnotationError(f"{path}: the points CSV needs 'x' and 'y' columns (has {', '.join(cols)})")

    def column(*names, default=math.nan):
        for n in names:
            if n in cols:
                try:
                    return np.array([float(r[cols[n]]) if r[cols[n]] not in ("", None) else default for r in rows])
                except ValueError as err:
                    raise AnnotationError(f"{path}: column {n!r} has a value that is not a number ({err})") from None
        return np.full(len(rows), default)

    names = [str(r[cols["class"]]).strip() if "class" in cols else "object" for r in rows]
    ids, classes = _class_ids(names, class_names)
    return DetectionAnnotations(column("y") * scale, column("x") * scale, column("height", "h") * scale,
                                column("width", "w") * scale, ids, classes)


def read_geojson_features(path: str | Path) -> list[Any]:
    """The features of a GeoJSON file as QuPath writes it: a FeatureCollection, a list of features, or one feature."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise AnnotationError(f"{path}: not a readable GeoJSON file ({err})") from None
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        return list(doc.get("features", []))
    return list(doc) if isinstance(doc, list) else [doc]


def points_from_geojson(path, class_names: list[str] | None = None) -> DetectionAnnotations:
    """Point or Polygon features (QuPath export, coordinates level-0 px, x then y); class from
    ``properties.classification.name``; polygons give their bounding box as the object size."""
    feats = read_geojson_features(path)
    ys, xs, hs, ws, names = [], [], [], [], []
    for f in feats:
        geom = (f or {}).get("geometry") or {}
        kind, coords = geom.get("type"), cast(Any, geom.get("coordinates"))  # JSON: checked by numpy below
        if kind == "Point":
            pts = np.asarray([coords], float)
        elif kind == "MultiPoint":
            pts = np.asarray(coords, float)
        elif kind == "Polygon":
            ring = np.asarray(coords[0], float)
            (x0, y0), (x1, y1) = ring.min(0), ring.max(0)
            pts = np.array([[(x0 + x1) / 2, (y0 + y1) / 2]])
            hs.append(y1 - y0)
            ws.append(x1 - x0)
        else:
            continue
        cls = ((f.get("properties") or {}).get("classification") or {}).get("name", "object")
        for px, py in pts[:, :2]:
            xs.append(px)
            ys.append(py)
            names.append(str(cls))
            if kind != "Polygon":
                hs.append(math.nan)
                ws.append(math.nan)
    if not xs:
        raise AnnotationError(f"{path}: no Point or Polygon features")
    ids, classes = _class_ids(names, class_names)
    return DetectionAnnotations(np.array(ys), np.array(xs), np.array(hs), np.array(ws), ids, classes)


# -- classification ------------------------------------------------------------------------------------------------
@dataclass
class ImageClass:
    """The class of a whole image (every training window of the image carries it)."""

    index: int
    class_names: list[str]

    def __post_init__(self) -> None:
        if not 0 <= self.index < len(self.class_names):
            raise AnnotationError(f"class {self.index} is not one of {self.class_names}")


def image_classes_from_csv(path, images: list[str]) -> list[ImageClass]:
    """A two-column CSV ``image,class`` (image by path or file name); every training image must be listed."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AnnotationError(f"{path}: cannot read the classes CSV ({err})") from None
    if rows and rows[0][0].strip().lower() == "image":
        rows = rows[1:]
    table = {}
    for row in rows:
        if len(row) < 2:
            raise AnnotationError(f"{path}: each row needs 'image,class', got {row!r}")
        table[os.path.basename(row[0].strip())] = row[1].strip()
    names = sorted(set(table.values()))
    out = []
    for image in images:
        key = os.path.basename(str(image))
        if key not in table:
            raise AnnotationError(f"{path}: no class given for image {key}")
        out.append(ImageClass(names.index(table[key]), names))
    return out
