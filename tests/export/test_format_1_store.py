"""Stores written before the metadata moved into the root attributes (format 1: a ``meta.json`` file) still export,
to the same results as a format-2 store of the same run: pixel sizes, class names and provenance come from the
metadata, so a reader that missed ``meta.json`` would show here as pixel units, generic names or refusals."""

from __future__ import annotations

import json
import shutil

import zarr
from exporthelpers import build_store

from legacystore import make_format_1
from napari_xt.export import (
    export_class_areas_csv,
    export_detections_csv,
    export_geojson,
    export_ome_zarr_labels,
    export_scores_json,
)


def _without_provenance(doc):
    if isinstance(doc, dict):
        return {k: _without_provenance(v) for k, v in doc.items() if k not in ("napari_xt", "exported")}
    if isinstance(doc, list):
        return [_without_provenance(v) for v in doc]
    return doc


def test_format_1_store_exports_like_format_2(tmp_path):
    new = build_store(tmp_path / "new.xt.zarr")
    shutil.copytree(new.path, tmp_path / "old.xt.zarr")
    old_path = tmp_path / "old.xt.zarr"
    make_format_1(old_path)
    assert (old_path / "meta.json").is_file()
    outputs = {}
    for label, store in (("new", new.path), ("old", old_path)):
        out = tmp_path / label
        out.mkdir()
        outputs[label] = {
            "detections": export_detections_csv(store, out / "d.csv").read_text(),
            "areas": export_class_areas_csv(store, out / "a.csv").read_text(),
            "scores": _without_provenance(json.loads(export_scores_json(store, out / "s.json").read_text())),
            "geojson": _without_provenance(json.loads(export_geojson(store, out / "g.geojson").read_text())),
        }
        labels = export_ome_zarr_labels(store, out / "l.ome.zarr")
        outputs[label]["ome"] = zarr.open_group(str(labels), mode="r").attrs.asdict().keys()
    assert outputs["old"] == outputs["new"]
    assert "_um" in outputs["old"]["detections"].splitlines()[0]  # the pixel size came from meta.json
    assert "nucleus" in outputs["old"]["detections"] and "malignant" in json.dumps(outputs["old"]["scores"])
