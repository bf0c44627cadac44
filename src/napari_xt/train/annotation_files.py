"""Which reader an annotation file goes to: CSV and QuPath GeoJSON (level-0 px, :mod:`.annotations`) or a GIS file
with a CRS (GeoPackage, Shapefile, GeoJSON; :mod:`.gis_vectors`, reprojected onto the image).

Apart from both so neither imports the other: the GIS reader builds :mod:`.annotations`' types, and the plain
readers need no GIS library.
"""

from __future__ import annotations

from pathlib import Path

from .annotations import AnnotationError, DetectionAnnotations, points_from_csv, points_from_geojson
from .gis_vectors import GIS_SUFFIXES, is_gis_file, read_gis

__all__ = ["points_from_file"]


def points_from_file(path, class_names: list[str] | None = None, image=None) -> DetectionAnnotations:
    """Objects from a CSV or QuPath GeoJSON (level-0 px), or from a GIS file (GeoPackage, Shapefile, GeoJSON with a
    CRS) reprojected onto ``image`` (see :mod:`.gis_vectors`; what falls off the image is in ``.gis_note``)."""
    suffix = Path(path).suffix.lower()
    if is_gis_file(path, image):
        gis = read_gis(path, image)
        ann = gis.points(class_names)
        ann.gis_note = gis.describe_skipped()  # type: ignore[attr-defined]
        return ann
    if suffix == ".csv":
        return points_from_csv(path, class_names)
    if suffix in (".geojson", ".json"):
        return points_from_geojson(path, class_names)
    raise AnnotationError(f"{path}: points are read from .csv or .geojson files or GIS files "
                          f"({', '.join(GIS_SUFFIXES)}), not {suffix or 'this file'}")
