"""Results leave napari-xt in the formats the field uses: OME-Zarr labels, GeoJSON for QuPath (RFC 7946 lon/lat for
georeferenced images), GeoTIFF and GeoPackage for GIS tools, CSV and JSON tables.

Every exporter reads only a result store (:class:`napari_xt.store.ResultStore` or its path), streams it chunk
by chunk, writes to a hidden sibling and renames it into place, refuses an existing output unless ``overwrite`` and
an unfinished run unless ``partial``. No Qt, no torch.
"""

from ._common import ExportError
from ._geojson import export_geojson
from ._geotiff import export_geotiff
from ._gpkg import export_gpkg
from ._ome_zarr import export_ome_zarr_labels
from ._tables import export_class_areas_csv, export_detections_csv, export_scores_json

__all__ = [
    "ExportError",
    "export_class_areas_csv",
    "export_detections_csv",
    "export_geojson",
    "export_geotiff",
    "export_gpkg",
    "export_ome_zarr_labels",
    "export_scores_json",
]
