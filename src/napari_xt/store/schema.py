"""What a result store must look like on disk, checked from its own JSON files before zarr reads any of them.

Why: zarr trusts each array's ``zarr.json``. A label array whose shape was edited to 10^9 x 10^9 reads as 10^18
background pixels (an export ran for minutes), a negative shape or another dtype fails deep inside zarr or numpy
("cannot reshape array of size 32768 into shape (512,512)") with nothing naming the store. The store's own metadata
(its spec: analysis shape, classes, chunk size, region count; and its plan) fixes the shape, dtype and chunking of
every array, so each array's metadata is compared with it first, from the JSON files alone (well under a
millisecond each): a mismatch is a :class:`~napari_xt.errors.StoreDamaged` naming the store, the array and the fix.

An array whose metadata is missing or wrong is rebuilt empty by a resume (:func:`rebuild`), and the regions whose
results it held are redone (:mod:`.check`); a store whose root metadata is lost cannot be repaired (nothing
says what it was made from) and must be made again. Pure JSON + zarr; no torch, no Qt.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zarr

from ..errors import StoreDamaged, StoreError
from .label_pyramid import level_shapes
from .layout import (
    DET_COLUMNS,
    IDS_CHUNK,
    ROWS_CHUNK,
    make_ids,
    make_labels,
    make_probabilities,
    make_table,
)
from .meta import ATTR, FORMAT, LEGACY_META

__all__ = ["Damage", "Layout", "as_error", "looks_like_store", "rebuild", "root_damage", "schema_damage"]

ROOT = "zarr.json"
_JSON_TYPES = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


@dataclass(frozen=True)
class Damage:
    """One thing wrong with a store: ``part`` (``zarr.json``, ``labels/0``, ...), what is wrong, the done regions it
    spoils (empty: none or not known), how it is fixed (``resume`` / ``verify`` / ``remake``, as
    :class:`~napari_xt.errors.StoreDamaged`), the chunk files at fault (relative to the store: the repair deletes
    undecodable ones) and whether the whole array must be made again (``rebuild``)."""

    part: str
    problem: str
    regions: tuple[int, ...] = ()
    fix: str = "resume"
    chunks: tuple[str, ...] = ()
    rebuild: bool = False

    def error(self, path: str | Path) -> StoreDamaged:
        return StoreDamaged(path, self.part, self.problem, self.regions, self.fix)


@dataclass(frozen=True)
class Layout:
    """One array as the store's spec makes it; ``grows``: axis 0 is an append-only row count (any length)."""

    shape: tuple[int, ...]
    dtype: str
    chunks: tuple[int, ...]
    fill: float = 0.0
    grows: bool = False


def as_error(path: str | Path, damages: list[Damage]) -> StoreDamaged:
    """One error for several damages: the parts named, the regions pooled, the strongest fix."""
    parts = list(dict.fromkeys(d.part for d in damages))
    part = ", ".join(parts[:3]) + (f" and {len(parts) - 3} more" if len(parts) > 3 else "")
    fixes = {d.fix for d in damages}
    fix = next(f for f in ("remake", "verify", "resume") if f in fixes)
    regions = sorted({r for d in damages for r in d.regions})
    return StoreDamaged(path, part, damages[0].problem, regions, fix)


def looks_like_store(path: str | Path) -> bool:
    """True for a folder laid out as a result store (a ``done`` array and a ``detections`` group), whatever state
    its root metadata is in: such a folder is reported as a damaged store, and may be replaced by ``overwrite``."""
    p = Path(path)
    return (p / "done" / ROOT).is_file() and (p / "detections").is_dir()


def _read_json(file: Path) -> tuple[Any, str]:
    """(document, "") or (None, why it cannot be read) for one ``zarr.json``."""
    if not file.is_file():
        return None, "is missing"
    try:
        raw = file.read_bytes()
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    if not raw.strip():
        return None, "is empty"
    try:
        return json.loads(raw), ""
    except (ValueError, UnicodeDecodeError):
        return None, "is not valid JSON"


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def root_damage(path: str | Path) -> tuple[dict[str, Any] | None, Damage | None]:
    """The store's full metadata, or the damage that hides it (root ``zarr.json`` missing, unreadable, empty, not an
    object, without napari-xt attributes; a format-1 ``meta.json`` likewise). Such a store must be made again."""
    path = Path(path)
    doc, why = _read_json(path / ROOT)

    def lost(problem: str, part: str = ROOT) -> tuple[None, Damage]:
        return None, Damage(part, f"{problem}, so what the store was made from is lost", fix="remake")

    if doc is None:
        return lost(f"its root metadata {why}")
    if not isinstance(doc, dict):
        return lost(f"its root metadata is {_kind(doc)}, not a JSON object")
    attrs = doc.get("attributes")
    info = attrs.get(ATTR) if isinstance(attrs, dict) else None
    if info is None:
        return lost("its root metadata has no napari-xt attributes")
    if not isinstance(info, dict):
        return lost(f"its root metadata's napari-xt attributes are {_kind(info)}, not a JSON object")
    try:
        fmt = int(info.get("store_format", 1))
    except (TypeError, ValueError):
        return lost(f"its store format {info.get('store_format')!r} is not a number")
    if fmt > FORMAT:
        raise StoreError(f"store {path} was made by a newer napari-xt (store format {fmt}); this release reads "
                         f"formats 1 to {FORMAT}: update napari-xt to open it.", path)
    if fmt >= 2:
        return dict(info), None
    meta, why = _read_json(path / LEGACY_META)  # format 1: the whole metadata in meta.json
    if meta is None:
        return lost(f"its metadata file {why}", LEGACY_META)
    if not isinstance(meta, dict):
        return lost(f"its metadata file holds {_kind(meta)}, not a JSON object", LEGACY_META)
    return meta, None


def _spec_problem(spec: Any, plan: Any) -> str:
    """Why the spec in the metadata is unusable ("" when it is fine): the spec fixes every array's layout."""
    if not isinstance(spec, dict):
        return f"its spec is {_kind(spec)}, not a JSON object"
    shape: Any = spec.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(v) is int and v > 0 for v in shape)):
        return f"its spec gives the label map shape {shape!r}, not two positive sizes"
    for key in ("num_classes", "region_count", "chunk", "min_level_size"):
        value = spec.get(key, 1)
        if type(value) is not int or value < (0 if key in ("num_classes", "region_count") else 1):
            return f"its spec gives {key} {value!r}"
    if isinstance(plan, dict) and isinstance(plan.get("analysis_shape"), list) and \
            [v for v in plan["analysis_shape"]] != list(shape):
        return (f"its spec gives the label map shape {shape[0]} x {shape[1]}, its plan "
                f"{' x '.join(str(v) for v in plan['analysis_shape'])}")
    return ""


def expected_layouts(spec: dict[str, Any], n_levels: int | None = None) -> dict[str, Layout]:
    """Every array the spec makes, by path inside the store (``n_levels``: as many label levels as the store's
    label group lists, when it is readable, so a store from a release with another level rule still reads)."""
    shape = (int(spec["shape"][0]), int(spec["shape"][1]))
    k, c, n = int(spec.get("num_classes", 0)), int(spec.get("chunk", 512)), int(spec.get("region_count", 0))
    out: dict[str, Layout] = {}
    if k > 0:
        label = "uint16" if k > 255 else "uint8"
        count = n_levels or len(level_shapes(shape, int(spec.get("min_level_size", 256))))
        for i in range(count):
            out[f"labels/{i}"] = Layout((-(-shape[0] // 2**i), -(-shape[1] // 2**i)), label, (c, c))
        if spec.get("probabilities"):
            out["probabilities"] = Layout((k, *shape), "uint8", (1, c, c))
    ids = (min(max(1, n), IDS_CHUNK),)
    out["done"] = Layout((n,), "bool", ids)
    out["detections/attempt"] = Layout((n,), "int64", ids)
    out["detections/table"] = Layout((0, len(DET_COLUMNS)), "float64", (ROWS_CHUNK, len(DET_COLUMNS)), grows=True)
    return out


def _dims(shape: Any) -> str:
    return " x ".join(str(v) for v in shape) if isinstance(shape, list) else repr(shape)


def _array_problem(doc: Any, want: Layout) -> str:
    """What in one array's metadata contradicts the layout the spec makes ("" when nothing)."""
    if not isinstance(doc, dict):
        return f"its zarr.json is {_kind(doc)}, not a JSON object"
    if doc.get("zarr_format") != 3 or doc.get("node_type") != "array":
        return "its zarr.json does not describe a zarr v3 array"
    shape = doc.get("shape")
    if not (isinstance(shape, list) and all(type(v) is int for v in shape)):
        return f"its shape {shape!r} is not a list of sizes"
    if want.grows:
        ok = len(shape) == len(want.shape) and shape[0] >= 0 and tuple(shape[1:]) == want.shape[1:]
        if not ok:
            return f"its shape is {_dims(shape)}, the store's spec makes it N x {_dims(list(want.shape[1:]))}"
    elif tuple(shape) != want.shape:
        return f"its shape is {_dims(shape)}, the store's spec makes it {_dims(list(want.shape))}"
    if doc.get("data_type") != want.dtype:
        return f"its data type is {doc.get('data_type')!r}, the store's spec makes it {want.dtype!r}"
    grid = doc.get("chunk_grid")
    chunks = grid.get("configuration", {}).get("chunk_shape") if isinstance(grid, dict) else None
    if not isinstance(chunks, list) or tuple(chunks) != want.chunks:
        return f"its chunks are {_dims(chunks)}, the store's spec makes them {_dims(list(want.chunks))}"
    try:
        fill_ok = float(doc["fill_value"]) == want.fill
    except (KeyError, TypeError, ValueError):
        fill_ok = False
    if not fill_ok:
        return f"its fill value is {doc.get('fill_value')!r}, not {want.fill:g}"
    if not isinstance(doc.get("codecs"), list) or not doc["codecs"]:
        return "its zarr.json lists no codecs"
    return ""


def _label_levels(path: Path) -> tuple[int | None, str]:
    """How many levels the labels group lists, or why the group itself is damaged."""
    doc, why = _read_json(path / "labels" / ROOT)
    if doc is None:
        gone = why == "is missing" and not (path / "labels").exists()
        return None, "is missing" if gone else f"its zarr.json {why}"
    try:
        n = len(doc["attributes"]["ome"]["multiscales"][0]["datasets"])
    except (KeyError, IndexError, TypeError):
        return None, "its zarr.json has no OME-NGFF multiscales"
    if doc.get("node_type") != "group" or n < 1:
        return None, "its zarr.json does not describe a label pyramid"
    return n, ""


def schema_damage(path: str | Path, meta: dict[str, Any]) -> list[Damage]:
    """Everything in the store's layout that contradicts its metadata, found from the JSON files alone.

    A damaged spec (the root metadata itself) can only be fixed by making the store again; a missing or wrong array
    is ``rebuild``-able: a resume makes it again, empty, and redoes the regions whose results it held.
    """
    path = Path(path)
    spec = meta.get("spec")
    problem = _spec_problem(spec, meta.get("plan"))
    if problem:
        return [Damage(ROOT, problem, fix="remake")]
    assert isinstance(spec, dict)
    damages: list[Damage] = []
    n_levels = None
    if int(spec.get("num_classes", 0)) > 0:
        n_levels, why = _label_levels(path)
        if why:
            damages.append(Damage("labels", f"the label pyramid {why}", rebuild=True))
    for part, want in expected_layouts(spec, n_levels).items():
        if part.startswith("labels/") and n_levels is None:
            continue  # the whole pyramid is rebuilt
        doc, why = _read_json(path / part / ROOT)
        if doc is None:
            problem = "is missing" if not (path / part).exists() else f"its zarr.json {why}"
        else:
            problem = _array_problem(doc, want)
        if problem:
            damages.append(Damage(part, problem, rebuild=True))
    for part, ndim, dtype in (("window_scores", 2, "float64"), ("image_scores", 1, "float32")):
        if (path / part).exists():
            doc, why = _read_json(path / part / ROOT)
            shape = doc.get("shape") if isinstance(doc, dict) else None
            ok = isinstance(shape, list) and len(shape) == ndim and all(type(v) is int and v >= 0 for v in shape) \
                and doc.get("data_type") == dtype
            if not ok:
                damages.append(Damage(part, f"its zarr.json {why or 'does not describe the scores table'}",
                                      rebuild=True))
    return damages


def rebuild(path: str | Path, spec: Any, damages: list[Damage]) -> list[str]:
    """Make every ``rebuild`` part of ``damages`` again, empty, as ``spec`` (a :class:`~.store.StoreSpec`) says;
    returns the parts remade.

    The caller (a resume) then clears the regions whose results those parts held. Image and window scores are only
    removed: the run makes them again.
    """
    path = Path(path)
    parts = [d.part for d in damages if d.rebuild]
    if not parts:
        return []
    root: Any = zarr.open_group(str(path), mode="r+", zarr_format=3)
    levels = sorted(int(p.split("/")[1]) for p in parts if p.startswith("labels/"))
    for part in parts:
        target = path / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if "labels" in parts:
        make_labels(root, spec)
    elif levels:
        make_labels(root, spec, levels)
    if "probabilities" in parts:
        make_probabilities(root, spec)
    if "done" in parts:
        make_ids(root, "done", spec)
    if "detections/table" in parts or "detections/attempt" in parts:
        det = root.require_group("detections")
        if "detections/table" in parts:
            make_table(det)
        if "detections/attempt" in parts:
            make_ids(det, "attempt", spec)
    return parts
