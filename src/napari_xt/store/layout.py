"""What a result store holds on disk, apart from the label pyramid (:mod:`.label_pyramid`) and the metadata
(:mod:`.meta`): layout constants, the detections table's rows, and building a new empty store. The parts of
:mod:`.results` that do not need an open store. Pure numpy + zarr; no Qt, no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..objects import same_object_keep
from .label_pyramid import level_shapes, ngff_label_attrs
from .meta import ATTR, FORMAT, clean, now_iso

__all__ = ["DET_COLUMNS", "EVERY_CHUNK", "IDS_CHUNK", "ROWS_CHUNK", "StoreSpec", "build_store", "detection_rows",
           "make_ids", "make_labels", "make_probabilities", "make_table", "select_detections"]

DET_COLUMNS = ("y", "x", "h", "w", "cls", "score", "region_id", "attempt")
ROWS_CHUNK = 4096
IDS_CHUNK = 1 << 16
#: metadata key: every chunk a done region wrote is a file (fill-only ones too); see :func:`build_store`
EVERY_CHUNK = "every_chunk_written"


@dataclass
class StoreSpec:
    """What a store is made for: the label map's shape (analysis px), classes, regions and chunking. Every array's
    layout follows from it (:mod:`.schema` checks them against it)."""

    shape: tuple[int, int]
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    class_colors: list[list[int]] = field(default_factory=list)
    region_count: int = 0
    chunk: int = 512
    probabilities: bool = False
    min_level_size: int = 256
    downsample_to_level0: float = 1.0

    @property
    def label_dtype(self) -> np.dtype:
        return np.dtype(np.uint16 if self.num_classes > 255 else np.uint8)

    def validate(self) -> None:
        if len(self.shape) != 2 or min(int(v) for v in self.shape) < 1:
            raise ValueError(f"shape must be two positive sizes (y, x), not {self.shape!r}")
        if self.num_classes < 0 or self.num_classes > 65535:
            raise ValueError(f"num_classes must be 0..65535, not {self.num_classes}")
        if self.region_count < 0 or self.chunk < 1 or self.min_level_size < 1 or not self.downsample_to_level0 > 0:
            raise ValueError("region_count >= 0, chunk >= 1, min_level_size >= 1 and downsample_to_level0 > 0 needed")


def detection_rows(region_id: int, detections: dict[str, Any] | None) -> np.ndarray | None:
    """A region's detection columns as table rows (attempt column left 0), or None for no detections."""
    if not detections:
        return None
    names = DET_COLUMNS[:6]
    missing = [k for k in names if k not in detections]
    extra = [k for k in detections if k not in names and k != "region_id"]
    if missing or extra:
        raise ValueError(f"detections need the columns {list(names)}" + (f"; missing {missing}" if missing else "")
                         + (f"; unknown {extra}" if extra else "") + ".")
    cols = [np.asarray(detections[k]).reshape(-1) for k in names]
    if len({len(c) for c in cols}) != 1:
        raise ValueError(f"detection columns have different lengths {[len(c) for c in cols]}.")
    if len(cols[0]) == 0:
        return None
    rows = np.zeros((len(cols[0]), len(DET_COLUMNS)), dtype=np.float64)
    for i, c in enumerate(cols):
        rows[:, i] = c
    rows[:, 6] = region_id
    return rows


def select_detections(table: np.ndarray, done: np.ndarray, attempt: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of done regions from the attempt that completed them, sorted by region id (stable)."""
    rid = table[:, 6].astype(np.int64)
    ok = (rid >= 0) & (rid < len(done)) & (table[:, 7] > 0)
    ok[ok] = done[rid[ok]] & (attempt[rid[ok]] == table[ok, 7].astype(np.int64))
    table = table[ok]
    table = table[np.argsort(table[:, 6], kind="stable")]
    out = {k: table[:, i].astype(np.float32) for i, k in enumerate(DET_COLUMNS[:6])}
    out["cls"] = table[:, 4].astype(np.int32)
    out["region_id"] = table[:, 6].astype(np.int32)
    return found_once(out)


def found_once(det: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Objects seen by two neighbouring regions reported once (:func:`napari_xt.objects.same_object_keep` across
    regions: same class, centres closer than half the larger object's size; the better one stays).

    Why at reading time: each region keeps the objects whose centre falls in its core, but a tree cut by the border
    is seen as two half-trees whose centres fall one in each core (23 such pairs among 291 detections on the held-out
    NEON rows). The store keeps what each region found (resume and repair stay per region); every reader (exports,
    review, scoring) sees each object once.
    """
    keep = same_object_keep(det["y"], det["x"], det["h"], det["w"], det["cls"], det["score"], group=det["region_id"])
    return det if keep.all() else {k: v[keep] for k, v in det.items()}


def build_store(root_path: Path, spec: Any, meta: dict[str, Any]) -> None:
    """An empty store at ``root_path`` (which must not exist): label pyramid, done flags, detections, and the
    metadata in the root attributes (:mod:`.meta`). Built in a hidden folder the caller then moves into place,
    so zarr's own attrs API is atomic enough here: nobody reads the folder before it is complete.

    ``every_chunk_written`` in the metadata promises that every chunk a done region wrote is a file, fill-only ones
    included, and that the done and attempt arrays have all their chunk files from the start: a missing file is then
    lost data (a copy cut short, a lazily synced folder), which a file listing finds (:mod:`.check`)."""
    root = zarr.open_group(str(root_path), mode="w-", zarr_format=3)
    if spec.num_classes > 0:
        make_labels(root, spec)
        if spec.probabilities:
            make_probabilities(root, spec)
    make_ids(root, "done", spec)
    det = root.create_group("detections")
    make_table(det)
    make_ids(det, "attempt", spec)
    spec_d = asdict(spec)
    spec_d["shape"] = [int(v) for v in spec.shape]
    root.attrs[ATTR] = clean({**meta, "store_format": FORMAT, "spec": spec_d, "created": now_iso(), "complete": False,
                              EVERY_CHUNK: True})


def make_labels(root: Any, spec: Any, levels: list[int] | None = None) -> None:
    """The label pyramid's group (NGFF attributes) and its levels (``levels``: only these, in an existing group)."""
    shapes = level_shapes(spec.shape, spec.min_level_size)
    if levels is None:
        labels = root.create_group("labels")
        labels.attrs.update(ngff_label_attrs(len(shapes), spec.downsample_to_level0, spec.class_names,
                                             spec.class_colors))
    else:
        labels = root["labels"]
    c, (h, w) = int(spec.chunk), spec.shape
    for i in range(len(shapes)) if levels is None else levels:  # level i: ceil(shape / 2**i), as level_shapes
        labels.create_array(str(i), shape=(-(-h // 2**i), -(-w // 2**i)), chunks=(c, c), dtype=spec.label_dtype,
                            fill_value=0)


def make_probabilities(root: Any, spec: Any) -> None:
    c = int(spec.chunk)
    probs = root.create_array("probabilities", shape=(spec.num_classes, *spec.shape), chunks=(1, c, c),
                              dtype=np.uint8, fill_value=0)
    probs.attrs.update({"axes": ["c", "y", "x"], "class_names": list(spec.class_names),
                        "encoding": "probability * 255, rounded"})


def make_ids(group: Any, name: str, spec: Any) -> None:
    """A per-region array (``done`` bool, ``attempt`` int64) with every chunk file written (fill values)."""
    from .chunkio import ChunkWriter

    dtype = bool if name == "done" else np.int64
    n = max(1, spec.region_count)
    arr = group.create_array(name, shape=(spec.region_count,), chunks=(min(n, IDS_CHUNK),), dtype=dtype,
                             fill_value=False if dtype is bool else 0)
    if spec.region_count:
        ChunkWriter(arr, keep_empty=True)[:] = np.zeros(spec.region_count, dtype)


def make_table(det: Any) -> None:
    table = det.create_array("table", shape=(0, len(DET_COLUMNS)), chunks=(ROWS_CHUNK, len(DET_COLUMNS)),
                             dtype=np.float64, fill_value=0.0)
    table.attrs["columns"] = list(DET_COLUMNS)
