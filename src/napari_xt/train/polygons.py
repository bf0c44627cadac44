"""Segmentation labels from QuPath GeoJSON polygons, rasterised lazily region by region.

Pathologists annotate in QuPath: polygons (with holes, and multipolygons) carrying a ``classification.name``. A
100k x 100k slide's annotations must never become one array, so :class:`PolygonLabels` keeps the polygons (level-0
px, x then y as QuPath writes them) with their bounding boxes and rasterises only those that touch the box a
training region asks for, at that region's resolution. It is a :class:`SegmentationLabels` to the trainer: ``read``,
``coarse_annotated`` and ``num_classes`` behave the same, and what no polygon covers is unlabelled (class 0 is
"not annotated", as with painted labels). A hole is unlabelled too: QuPath excludes it from the annotation, which
says nothing about what is inside. Later features are drawn over earlier ones, as QuPath shows them.

The same class serves a napari Shapes layer in the Fine-tune tab (``app.finetune.polygons_from_shapes`` turns its
polygons, rectangles and ellipses into level-0 rings), and :class:`LayeredLabels` draws such polygons over painted
labels, so a user may paint some classes and outline others on one image.

Class names map to class ids through ``class_names`` (id 0 is "unlabelled"); without it, the names found are sorted
and numbered from 1. Features whose class is not in ``class_names``, features without a class and non-polygon
features are skipped and counted in ``skipped`` (name -> count), so the CLI and the tab can say what was left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .annotations import AnnotationError, SegmentationLabels, read_geojson_features

UNLABELLED = 0


class PolygonLabels(SegmentationLabels):
    """Polygons ``[(class id, exterior (N, 2) x/y, [holes...]), ...]`` over an image of ``image_shape`` (level 0)."""

    def __init__(self, polygons: list[tuple[int, np.ndarray, list[np.ndarray]]], image_shape: tuple[int, int],
                 class_names: list[str], skipped: dict[str, int] | None = None):
        super().__init__(levels=[], downsamples=[], ignore=UNLABELLED, class_names=list(class_names))
        self.polygons = polygons
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.skipped = dict(skipped or {})
        boxes = [(ext[:, 1].min(), ext[:, 0].min(), ext[:, 1].max(), ext[:, 0].max()) for _, ext, _ in polygons]
        self.boxes = np.asarray(boxes, float).reshape(-1, 4)  # y0, x0, y1, x1

    @classmethod
    def from_geojson(cls, path: str | Path, image_shape: tuple[int, int],
                     class_names: list[str] | None = None) -> PolygonLabels:
        path = Path(path)
        feats = read_geojson_features(path)
        shapes: list[tuple[str, np.ndarray, list[np.ndarray]]] = []
        skipped: dict[str, int] = {}
        for f in feats:
            geom = (f or {}).get("geometry") or {}
            kind, coords = geom.get("type"), geom.get("coordinates") or []
            name = ((f.get("properties") or {}).get("classification") or {}).get("name")
            if kind not in ("Polygon", "MultiPolygon"):
                skipped[f"{kind or 'empty'} feature"] = skipped.get(f"{kind or 'empty'} feature", 0) + 1
                continue
            if not name:
                skipped["(no class)"] = skipped.get("(no class)", 0) + 1
                continue
            for poly in ([coords] if kind == "Polygon" else list(coords)):
                rings = [np.asarray(r, float)[:, :2] for r in poly if len(r) >= 3]
                if rings:
                    shapes.append((str(name), rings[0], rings[1:]))
        names = list(class_names) if class_names else ["unlabelled"] + sorted({s[0] for s in shapes})
        lookup = {n: i for i, n in enumerate(names) if i != UNLABELLED}
        polygons = []
        for name, ext, holes in shapes:
            if name not in lookup:
                skipped[name] = skipped.get(name, 0) + 1
                continue
            polygons.append((lookup[name], ext, holes))
        if not polygons:
            raise AnnotationError(f"{path}: no polygon with a known class"
                                  + (f" (skipped: {_describe(skipped)})" if skipped else ""))
        return cls(polygons, image_shape, names, skipped)

    def read(self, box0: tuple[float, float, float, float], out_shape: tuple[int, int]) -> np.ndarray:
        """Class ids of a level-0 box at ``out_shape`` (pixel centres), from the polygons that touch it only."""
        y0, x0, y1, x1 = box0
        out = np.full(out_shape, UNLABELLED, dtype=np.int64)
        if not len(self.boxes):
            return out
        b = self.boxes
        hit = np.flatnonzero((b[:, 0] < y1) & (b[:, 2] > y0) & (b[:, 1] < x1) & (b[:, 3] > x0))
        sy, sx = (y1 - y0) / out_shape[0], (x1 - x0) / out_shape[1]
        for i in hit:  # in file order: later polygons over earlier ones
            cid, ext, holes = self.polygons[i]
            inside = _fill(ext, y0, x0, sy, sx, out_shape)
            for hole in holes:
                inside &= ~_fill(hole, y0, x0, sy, sx, out_shape)
            out[inside] = cid
        return out

    def coarse_annotated(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        h, w = self.image_shape
        step = max(1.0, max(h, w) / max_side)
        shape = (max(1, math.ceil(h / step)), max(1, math.ceil(w / step)))
        # a polygon smaller than a coarse pixel still marks its pixel: rasterise, then add the bounding-box corners
        mask = self.read((0.0, 0.0, shape[0] * step, shape[1] * step), shape) != UNLABELLED
        for y0, x0, _, _ in self.boxes:
            mask[min(shape[0] - 1, int(y0 / step)), min(shape[1] - 1, int(x0 / step))] = True
        return mask, step

    def num_classes(self) -> int:
        return len(self.class_names)


def ellipse_ring(corners: np.ndarray, n: int = 64) -> np.ndarray:
    """A closed ring of ``n`` points on the ellipse inscribed in a (possibly rotated) box given by its 4 corners in
    order, as napari stores an ellipse; the coordinates keep whatever axis order the corners have."""
    c = np.asarray(corners, float)[:4]
    centre = c.mean(0)
    a, b = (c[1] - c[0]) / 2, (c[3] - c[0]) / 2  # half-axes along the two sides of the box
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)[:, None]
    return centre + np.cos(t) * a + np.sin(t) * b


class LayeredLabels(SegmentationLabels):
    """Painted labels with polygons drawn over them: where a polygon says a class, it wins; elsewhere the paint.

    Both stay lazy (each ``read`` asks both sources for the same box). Unlabelled is ``below.ignore`` throughout.
    """

    def __init__(self, below: SegmentationLabels, above: SegmentationLabels):
        n = max(below.num_classes(), above.num_classes())
        names = next((list(x.class_names) for x in (below, above) if len(x.class_names) >= n), [])
        colors = below.class_colors if names == below.class_names else []
        super().__init__(levels=[], downsamples=[], ignore=below.ignore, class_names=names, class_colors=colors)
        self.below, self.above, self._n = below, above, n

    def read(self, box0: tuple[float, float, float, float], out_shape: tuple[int, int]) -> np.ndarray:
        out = self.below.read(box0, out_shape)
        top = self.above.read(box0, out_shape)
        hit = top != self.above.ignore
        out[hit] = top[hit]
        return out

    def coarse_annotated(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """The union of both sources' coarse masks on the coarser of their grids (no annotated pixel is lost: each
        marked pixel of the finer mask marks the coarse pixel it falls in)."""
        (m1, s1), (m2, s2) = self.below.coarse_annotated(max_side), self.above.coarse_annotated(max_side)
        (big, step), (small, small_step) = ((m1, s1), (m2, s2)) if s1 >= s2 else ((m2, s2), (m1, s1))
        out = np.array(big, dtype=bool, copy=True)
        ys, xs = np.nonzero(small)
        ys = np.minimum((ys * small_step / step).astype(np.int64), out.shape[0] - 1)
        xs = np.minimum((xs * small_step / step).astype(np.int64), out.shape[1] - 1)
        out[ys, xs] = True
        return out, step

    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else self._n


def _fill(ring: np.ndarray, y0: float, x0: float, sy: float, sx: float, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of ``shape`` whose centres lie inside ``ring`` (x, y in level-0 px) after mapping to output px."""
    from skimage.draw import polygon

    rows = (ring[:, 1] - y0) / sy - 0.5
    cols = (ring[:, 0] - x0) / sx - 0.5
    mask = np.zeros(shape, dtype=bool)
    rr, cc = polygon(rows, cols, shape)
    mask[rr, cc] = True
    return mask


def _describe(skipped: dict[str, Any]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in sorted(skipped.items()))


def describe_skipped(labels: SegmentationLabels) -> str:
    """'' or 'skipped: tumor x3, Point feature x2' for the features a GeoJSON file had that were not used."""
    skipped = getattr(labels, "skipped", None)
    return f"skipped: {_describe(skipped)}" if skipped else ""
