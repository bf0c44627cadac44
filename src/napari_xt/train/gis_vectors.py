"""GIS annotations (:mod:`napari_xt.io._vectors`) as training targets: points and boxes for detection, polygons for
segmentation, with the features left out counted, never dropped silently."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..io._vectors import GIS_SUFFIXES, GisReadError, GisVectors, is_gis_file
from ..io._vectors import read_gis as _read
from .annotations import AnnotationError, DetectionAnnotations, _class_ids

__all__ = ["GIS_SUFFIXES", "GisAnnotations", "is_gis_file", "read_gis"]


class GisAnnotations(GisVectors):
    """GIS features on an image, ready to become detection or segmentation targets."""

    def points(self, class_names: list[str] | None = None) -> DetectionAnnotations:
        """Objects for detection training: points as they are, polygons as their bounding box (centre and size)."""
        import shapely

        ys, xs, hs, ws, names = [], [], [], [], []
        for geom, cls in zip(self.geometries, self.classes, strict=True):
            kind = geom.geom_type
            parts = list(geom.geoms) if kind.startswith("Multi") else [geom]
            for part in parts:
                if part.geom_type == "Point":
                    xs.append(part.x)
                    ys.append(part.y)
                    hs.append(math.nan)
                    ws.append(math.nan)
                else:
                    x0, y0, x1, y1 = shapely.bounds(part)
                    xs.append((x0 + x1) / 2)
                    ys.append((y0 + y1) / 2)
                    hs.append(y1 - y0)
                    ws.append(x1 - x0)
                names.append(cls)
        if not xs:
            raise AnnotationError(f"{self.path}: no point or polygon inside the image"
                                  + (f" ({self.describe_skipped()})" if self.skipped else ""))
        ids, classes = _class_ids(names, class_names)
        # store and napari put pixel centres on integers: a map point at pixel corner x is pixel x - 0.5
        return DetectionAnnotations(np.array(ys) - 0.5, np.array(xs) - 0.5, np.array(hs), np.array(ws), ids, classes)

    def polygons(self, image_shape: tuple[int, int], class_names: list[str] | None = None):
        """Segmentation labels from the polygons (points are counted as left out): a :class:`PolygonLabels`."""
        from .polygons import UNLABELLED, PolygonLabels

        shapes, skipped = [], dict(self.skipped)
        for geom, cls in zip(self.geometries, self.classes, strict=True):
            parts = list(geom.geoms) if geom.geom_type.startswith("Multi") else [geom]
            for part in parts:
                if part.geom_type != "Polygon":
                    skipped["point features (not polygons)"] = skipped.get("point features (not polygons)", 0) + 1
                    continue
                holes = [np.asarray(r.coords, float)[:, :2] for r in part.interiors]
                shapes.append((cls, np.asarray(part.exterior.coords, float)[:, :2], holes))
        names = list(class_names) if class_names else ["unlabelled"] + sorted({s[0] for s in shapes})
        lookup = {n: i for i, n in enumerate(names) if i != UNLABELLED}
        polys = []
        for cls, ext, holes in shapes:
            if cls not in lookup:
                skipped[f"of class {cls!r} (not in the class names)"] = skipped.get(
                    f"of class {cls!r} (not in the class names)", 0) + 1
                continue
            polys.append((lookup[cls], ext, holes))
        if not polys:
            raise AnnotationError(f"{self.path}: no polygon inside the image" + (
                f" ({GisVectors(self.path, [], [], skipped=skipped).describe_skipped()})" if skipped else ""))
        return PolygonLabels(polys, image_shape, names, skipped)


def read_gis(path: str | Path, image, class_field: str | None = None) -> GisAnnotations:
    """:func:`napari_xt.io._vectors.read_gis` with its errors as :class:`AnnotationError` (what train callers catch)."""
    try:
        found = _read(path, image, class_field)
    except GisReadError as err:
        raise AnnotationError(str(err)) from None
    return GisAnnotations(found.path, found.geometries, found.classes, found.crs_name, found.skipped)
