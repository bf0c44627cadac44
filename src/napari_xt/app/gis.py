"""GIS annotations onto an image in the viewer: a GeoPackage/Shapefile/GeoJSON as Points and Shapes layers.

The Fine-tune tab trains from Points (detection) and Shapes (segmentation) layers; an analyst who marked trees in
QGIS gets them as exactly those layers, reprojected onto the image (``train.gis_vectors``) and placed with the image
layer's own scale and translation, each feature's class in a ``class`` feature (which the tab reads). Torch-free.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .layers import layer_to_large_image

LayerData = tuple[Any, dict[str, Any], str]


def gis_layer_data(path: str | Path, image_layer: Any) -> tuple[list[LayerData], str]:
    """``([Points and/or Shapes layer data], note)`` for the features of ``path`` that fall on ``image_layer``.

    ``note`` says what was left out and why ('' when nothing was); errors are the reader's typed ones
    (``AnnotationError``, ``GeoDependencyMissing``), one sentence each.
    """
    from ..io._vectors import read_gis

    image = layer_to_large_image(image_layer)
    try:
        gis = read_gis(path, image)
    finally:
        image.close()
    place = {"scale": tuple(image_layer.scale)[-2:], "translate": tuple(image_layer.translate)[-2:]}
    stem = Path(path).stem
    points, point_classes, rings, ring_classes = [], [], [], []
    for geom, cls in zip(gis.geometries, gis.classes, strict=True):
        for part in (list(geom.geoms) if geom.geom_type.startswith("Multi") else [geom]):
            if part.geom_type == "Point":  # map points sit on pixel corners here; napari puts centres on integers
                points.append((part.y - 0.5, part.x - 0.5))
                point_classes.append(cls)
            elif part.geom_type == "Polygon":
                xy = np.asarray(part.exterior.coords, float)[:-1, :2]
                rings.append(xy[:, ::-1] - 0.5)
                ring_classes.append(cls)
    out: list[LayerData] = []
    if points:
        out.append((np.asarray(points, float), {"name": f"{stem} points", "features": {"class": point_classes},
                                                "size": 12, "face_color": "yellow", **place}, "points"))
    if rings:
        out.append((rings, {"name": f"{stem} polygons", "shape_type": "polygon", "features": {"class": ring_classes},
                            "edge_color": "cyan", "face_color": "transparent", **place}, "shapes"))
    return out, gis.describe_skipped()
