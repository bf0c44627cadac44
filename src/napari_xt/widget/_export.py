"""The Run tab's "Export…" button: the result store named in *Results* -> OME-Zarr / GeoJSON / CSV / JSON.

The exporters read the store on disk (never the layers), so what is exported is exactly what resume and the CLI
see. Export runs in a worker; a run that was cancelled exports as *partial* and the files say so.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import PushButton
from napari.qt.threading import create_worker
from napari.utils import notifications

#: (file-dialog filter, format, suffix appended when the user typed none)
FORMATS = (
    ("QuPath GeoJSON (*.geojson)", "geojson", ".geojson"),
    ("OME-Zarr labels (*.ome.zarr)", "ome-zarr", ".ome.zarr"),
    ("Detections CSV (*.csv)", "csv", ".csv"),
    ("Class areas CSV (*.csv)", "areas", ".areas.csv"),
    ("Class scores JSON (*.json)", "json", ".json"),
)


def export_store(store_path: str, out: str, fmt: str) -> str:
    """Worker side: export one format from a store (partial runs allowed and marked); returns a short summary."""
    from .. import export
    from ..export._common import open_store

    store = open_store(store_path)
    partial = not store.complete
    counts: dict = {}
    if fmt == "ome-zarr":
        path = export.export_ome_zarr_labels(store, out, partial=partial)
    elif fmt == "geojson":
        path = export.export_geojson(store, out, level=_geojson_level(store), partial=partial, counts=counts)
    elif fmt == "csv":
        path = export.export_detections_csv(store, out, partial=partial, counts=counts)
    elif fmt == "areas":
        path = export.export_class_areas_csv(store, out, partial=partial, counts=counts)
    else:
        path = export.export_scores_json(store, out, partial=partial)
    what = ", ".join(f"{v} {k}" for k, v in counts.items())
    return f"Exported {Path(path).name}" + (f" ({what})" if what else "") + (" — partial run" if partial else "")


def _geojson_level(store) -> int:
    """Trace polygons on a level of at most ~8k px per side: the same shapes, minutes instead of an hour."""
    for i, level in enumerate(store.labels):
        if max(level.shape) <= 8192:
            return i
    return max(0, len(store.labels) - 1)


class ExportButton(PushButton):
    """Asks for a file (the filter picks the format) and exports the store that ``store_path()`` names."""

    def __init__(self, store_path, parent_widget):
        super().__init__(text="Export…", tooltip="export the results (store on disk) for QuPath, OME-Zarr viewers, "
                                                  "spreadsheets")
        self._store_path, self._parent = store_path, parent_widget
        self.worker = None
        self.changed.connect(self.ask)

    def ask(self, _=None) -> None:
        from qtpy.QtWidgets import QFileDialog

        store = self._store_path()
        if not store:
            notifications.show_error("Export: there are no results yet; run the model first.")
            return
        filters = ";;".join(f for f, _, _ in FORMATS)
        default = str(Path(store).with_suffix(""))
        path, chosen = QFileDialog.getSaveFileName(self._parent.native, "Export results", default, filters)
        if path:
            fmt, suffix = next(((f, s) for label, f, s in FORMATS if label == chosen), ("geojson", ".geojson"))
            self.export(store, path if path.endswith(suffix) or "." in Path(path).name else path + suffix, fmt)

    def export(self, store: str, out: str, fmt: str) -> None:
        if self.worker is not None:
            return
        self.enabled = False
        worker = create_worker(export_store, store, out, fmt, _progress={"desc": "xT export"}, _ignore_errors=True)
        worker.returned.connect(notifications.show_info)
        worker.errored.connect(lambda err: notifications.show_error(f"Export: {err}"))
        worker.finished.connect(self._done)
        self.worker = worker
        worker.start()

    def _done(self) -> None:
        self.worker = None
        self.enabled = True
