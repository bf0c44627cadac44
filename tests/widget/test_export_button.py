"""The Run tab's Export… button: exports the store on disk in the format the file dialog's filter names."""

from __future__ import annotations

import json

import numpy as np
import zarr
from dockhelpers import configure, make_dock

from napari_xt.store import ResultStore


def test_export_after_a_run_writes_geojson_and_ome_zarr(make_napari_viewer, qtbot, tissue_ome_tiff, seg_checkpoint,
                                                        tmp_path, monkeypatch, notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.open(str(tissue_ome_tiff), plugin="napari-xt")
    assert dock.add_checkpoint(seg_checkpoint)
    configure(dock, str(seg_checkpoint))
    store_path = tmp_path / "run.xt.zarr"
    dock.out.value = store_path
    assert not dock.export_button.enabled  # nothing to export yet
    ends = []
    dock.runner.ended.connect(ends.append)
    dock.start()
    qtbot.waitUntil(lambda: bool(ends), timeout=120_000)
    qtbot.waitUntil(lambda: dock.export_button.enabled, timeout=10_000)

    from qtpy.QtWidgets import QFileDialog

    answers = iter([(str(tmp_path / "cells"), "QuPath GeoJSON (*.geojson)"),
                    (str(tmp_path / "labels"), "OME-Zarr labels (*.ome.zarr)")])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: next(answers)))
    dock.export_button.ask()
    qtbot.waitUntil(lambda: dock.export_button.worker is None, timeout=60_000)
    dock.export_button.ask()
    qtbot.waitUntil(lambda: dock.export_button.worker is None, timeout=60_000)
    assert not notes.errors(), notes.errors()

    doc = json.loads((tmp_path / "cells.geojson").read_text())
    assert doc["type"] == "FeatureCollection" and doc["features"]
    names = {f["properties"]["classification"]["name"] for f in doc["features"]}
    assert names <= {"stroma", "nucleus"} and "nucleus" in names  # the test model favours class 2
    store = ResultStore.open(store_path)
    labels = zarr.open_group(str(tmp_path / "labels.ome.zarr"), mode="r")
    level0 = next(v for k, v in labels.arrays() if k == "0")
    np.testing.assert_array_equal(np.asarray(level0[:]).reshape(store.labels[0].shape), store.labels[0][:])
