"""The Fine-tune tab's "Load GIS annotations…": points and polygons drawn in QGIS onto the image as layers."""

from __future__ import annotations

from typing import Any

from napari.utils import notifications

GIS_FILTER = "GIS vectors (*.gpkg *.shp *.geojson *.json *.fgb *.kml);;All files (*)"


def add_gis_layers(viewer: Any, image_layer: Any, path: str) -> str:
    """Add the Points/Shapes layers of ``path`` over ``image_layer``; returns the sentence to show (what was added
    and what was left out). Errors are the reader's typed ones, worded by :func:`load_gis_annotations`."""
    from ..app.gis import gis_layer_data

    layers, note = gis_layer_data(path, image_layer)
    added = []
    for data, kwargs, kind in layers:
        layer = viewer.add_points(data, **kwargs) if kind == "points" else viewer.add_shapes(data, **kwargs)
        added.append(f"{len(data)} {'points' if kind == 'points' else 'polygons'} ({layer.name})")
    text = f"Loaded {' and '.join(added)}: choose them as Points / Polygons above."
    return f"{text} {note[0].upper()}{note[1:]}." if note else text


def load_gis_annotations(viewer: Any, image_layer: Any, parent: Any = None) -> str | None:
    """Ask for a GIS file and add its layers; a user mistake becomes one notification, never a traceback."""
    from qtpy.QtWidgets import QFileDialog

    if image_layer is None:
        notifications.show_warning("Choose the image the annotations belong to first.")
        return None
    path, _ = QFileDialog.getOpenFileName(parent, "Load GIS annotations", "", GIS_FILTER)
    if not path:
        return None
    try:
        text = add_gis_layers(viewer, image_layer, path)
    except ValueError as err:  # AnnotationError, GeoDependencyMissing, ImageReadError: one sentence each
        notifications.show_warning(str(err))
        return None
    notifications.show_info(text)
    return text
