"""Result stores with a real region plan (so chunks map to regions), and the ways stores get damaged in real life.

Issue 26 tried a good store copied and damaged nine ways (label array shape or dtype edited, label chunks deleted or
overwritten with garbage, the labels folder removed, the root metadata unreadable, empty or of the wrong type; the
shape edited to 10^9 x 10^9 and to a negative size), then read, exported and resumed. The engine, export and napari
tests share these damages so every door of the store is tried with the same ones.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from napari_xt.engine.store_plan import plan_from_meta
from napari_xt.store import ResultStore, StoreSpec

SHAPE = (600, 700)  # analysis px: 3 x 3 regions of 256 px (the last row and column cut by the edge)
SIZE, CHUNK = 256, 128


def plan_meta(shape=SHAPE, size=SIZE, window_size=2) -> dict:
    """Store metadata whose ``plan`` rebuilds (:func:`plan_from_meta`), with its checksum, like the driver writes."""
    rows, cols = -(-shape[0] // size), -(-shape[1] // size)
    ids = np.arange(rows * cols).reshape(rows, cols)
    windows = [ids[r:r + window_size, c:c + window_size].ravel().tolist()
               for r in range(0, rows, window_size) for c in range(0, cols, window_size)]
    plan = {"image_shape": [shape[0] * 2, shape[1] * 2], "level": 1, "level_downsample": 2.0, "scale": 1.0,
            "analysis_shape": list(shape), "region_size": size, "overlap": 0, "context": "window",
            "window_size": window_size, "order": "row-major", "windows": windows, "skipped": []}
    rebuilt = plan_from_meta({"plan": plan})
    assert rebuilt is not None
    return {"model_checksum": "m", "image_fingerprint": "i", "plan_checksum": rebuilt.checksum(), "model": "seg-det",
            "image": "/data/slide.svs", "image_shape": [shape[0] * 2, shape[1] * 2, 3], "plan": plan,
            "image_pixel_size": [0.5, 0.5], "image_pixel_unit": "um",
            "model_config": {"class_names": {"detection": ["cell"]}}}


def labels_of(shape=SHAPE) -> np.ndarray:
    """Classes 0..3 in blocks and stripes: no chunk of the pyramid is background only except at the far corner."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = ((yy // 40 + xx // 55) % 4).astype(np.uint8)
    lab[480:, 600:] = 0  # one background-only block: a chunk that exists only because every chunk is written
    return lab


def planned_store(path, done=None, finish=True, detections=True) -> ResultStore:
    """A store of :func:`plan_meta`'s plan, written region by region as the engine writes (cores from the plan)."""
    meta = plan_meta()
    plan = plan_from_meta(meta)
    assert plan is not None
    spec = StoreSpec(shape=SHAPE, num_classes=4, class_names=["bg", "a", "b", "c"], region_count=len(plan.regions),
                     chunk=CHUNK, min_level_size=64, downsample_to_level0=2.0)
    store = ResultStore.create(path, spec, meta)
    lab = labels_of()
    for region in plan.regions if done is None else [plan.regions[i] for i in done]:
        y0, x0, y1, x1 = region.core
        det = None
        if detections:
            n = 1 + region.id % 3
            det = {"y": np.full(n, (y0 + 5) * 2.0), "x": np.arange(n) * 10.0 + x0 * 2, "h": np.full(n, 6.0),
                   "w": np.full(n, 4.0), "cls": np.zeros(n), "score": np.full(n, 0.9)}
        store.write_region(region.id, region.core, lab[y0:y1, x0:x1], detections=det)
    if finish:
        store.finish({"regions_done": store.n_done})
    store.close()
    return ResultStore.open(path)


# -- the damages -----------------------------------------------------------------------------------------------------
def _edit(file: Path, key: str, value) -> None:
    doc = json.loads(file.read_text())
    doc[key] = value(doc[key]) if callable(value) else value
    file.write_text(json.dumps(doc))


def chunk_files(store: Path, part: str = "labels") -> list[Path]:
    return sorted(f for f in (store / part).rglob("*") if f.is_file() and f.name != "zarr.json")


#: name -> (damage(store path), the part the error names, whether a resume can repair it)
DAMAGES = {
    "shape_other": (lambda s: _edit(s / "labels/0/zarr.json", "shape", lambda v: [v[0] + 100, v[1]]), "labels/0", True),
    "shape_huge": (lambda s: _edit(s / "labels/0/zarr.json", "shape", [10**9, 10**9]), "labels/0", True),
    "shape_negative": (lambda s: _edit(s / "labels/0/zarr.json", "shape", lambda v: [-5, v[1]]), "labels/0", True),
    "dtype": (lambda s: _edit(s / "labels/0/zarr.json", "data_type", "uint64"), "labels/0", True),
    "chunks_deleted": (lambda s: [f.unlink() for f in chunk_files(s)], "labels/0", True),
    "chunks_garbage": (lambda s: [f.write_bytes(os.urandom(200)) for f in chunk_files(s)], "labels/0", True),
    "labels_removed": (lambda s: shutil.rmtree(s / "labels"), "labels", True),
    "root_unreadable": (lambda s: (s / "zarr.json").write_bytes(b"\x00\xff garbage {"), "zarr.json", False),
    "root_empty": (lambda s: (s / "zarr.json").write_text(""), "zarr.json", False),
    "root_wrong_type": (lambda s: (s / "zarr.json").write_text("[1, 2, 3]"), "zarr.json", False),
}
#: damages a file listing (the cheap check) finds; garbage chunks need decoding (--deep / --verify)
LAYOUT = ("shape_other", "shape_huge", "shape_negative", "dtype", "labels_removed")
ROOT = ("root_unreadable", "root_empty", "root_wrong_type")


def copy(good: Path, into: Path, name: str = "copy") -> Path:
    out = into / f"{name}.xt.zarr"
    shutil.copytree(good, out)
    return out


def damaged_copy(good: Path, into: Path, name: str) -> Path:
    """A copy of the store ``good`` with damage ``name`` done to it."""
    out = copy(good, into, name)
    DAMAGES[name][0](out)
    return out
