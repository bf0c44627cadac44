"""What every exporter shares: the refusal rules, the write-aside-then-rename output, and what a store says about
its classes and its physical pixel size.

Each exporter reads a :class:`~napari_xt.engine.store.ResultStore` and nothing else, so these helpers take the
store (or its path) and answer in plain Python types.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from .. import __version__
from ..engine._pyramid_write import replace_path

#: used when a model brings no colours (tab10-like; the same order as the dock's overlay, class 0 is background)
PALETTE = [
    [0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
]

#: unit spellings found in images, meta.json and napari -> (NGFF unit name, short column suffix)
_UNITS = {
    **dict.fromkeys(("nm", "nanometer"), ("nanometer", "nm")),
    **dict.fromkeys(("um", "µm", "micron", "micrometer"), ("micrometer", "um")),
    **dict.fromkeys(("mm", "millimeter"), ("millimeter", "mm")),
    **dict.fromkeys(("cm", "centimeter"), ("centimeter", "cm")),
    **dict.fromkeys(("m", "meter", "metre"), ("meter", "m")),
    **dict.fromkeys(("km", "kilometer"), ("kilometer", "km")),
}


class ExportError(ValueError):
    """An export cannot be done as asked; the message names the store or the output and says why."""


def open_store(store):
    """A :class:`ResultStore` from a store or a path; a path that is not a store becomes an :class:`ExportError`."""
    from ..engine.store import ResultStore, StoreError

    if isinstance(store, ResultStore):
        return store
    try:
        return ResultStore.open(store)
    except StoreError as err:
        raise ExportError(str(err)) from None


def check_complete(store, partial: bool) -> bool:
    """Refuse an unfinished run unless ``partial``; returns True when the output has to say it is partial."""
    if store.complete:
        return False
    total = store.spec.region_count
    if not partial:
        raise ExportError(f"store {store.path} is not finished ({store.n_done} of {total} regions done); finish or "
                          "resume the run, or export what is there with partial=True (--partial).")
    return True


def check_out(out, overwrite: bool, what: str = "output") -> Path:
    """The absolute output path; an existing one is refused unless ``overwrite`` (and is never half-replaced)."""
    from ..engine.store import is_store

    out = Path(os.path.abspath(os.fspath(out)))
    if is_store(out):
        raise ExportError(f"{what} {out} is a napari-xt result store; refusing to write over it.")
    if out.exists() and not overwrite:
        kind = "folder" if out.is_dir() else "file"
        raise ExportError(f"{what} {out} already exists (a {kind}); choose another path or pass overwrite=True "
                          "(--overwrite).")
    zarr_folder = (out / "zarr.json").is_file() or (out / ".zgroup").is_file()
    if out.is_dir() and not out.is_symlink() and not zarr_folder:
        raise ExportError(f"{what} {out} is a folder that is not an earlier export (no zarr.json); refusing to "
                          "replace it even with overwrite.")
    return out


@contextlib.contextmanager
def written_aside(out: Path, folder: bool = False) -> Iterator[Path]:
    """Yield a hidden sibling path to write into; it replaces ``out`` only when the block ends without error.

    A crash, a full disk or an exception leaves ``out`` as it was (absent or the old file), never a file that looks
    complete but is not.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        if folder:
            tmp.mkdir()
        yield tmp
        replace_path(tmp, out)
    finally:
        remove(tmp)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def provenance(store, partial: bool) -> dict:
    """What an output records about where it came from (and whether the run had finished)."""
    return {
        "source_store": str(store.path),
        "partial": bool(partial),
        "regions_done": int(store.n_done),
        "regions_total": int(store.spec.region_count),
        "model": store.meta.get("model"),
        "image": store.meta.get("image"),
        "exported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "software": f"napari-xt {__version__}",
    }


def segmentation_classes(store) -> tuple[list[str], list[list[int]]]:
    """Names and RGB colours of every segmentation class (class 0 included), filled in where the store has none."""
    n = int(store.spec.num_classes)
    names = list(store.spec.class_names)[:n]
    names += [f"class {i}" for i in range(len(names), n)]
    colors = [[int(v) for v in list(c)[:3]] for c in store.spec.class_colors][:n]
    colors += [PALETTE[i % len(PALETTE)] for i in range(len(colors), n)]
    return names, colors


def detection_classes(store, n_needed: int) -> tuple[list[str], list[list[int]]]:
    """Names and RGB colours of the detection classes (from the model config in meta.json, else generic)."""
    cfg = store.meta.get("model_config") or {}
    names = list((cfg.get("class_names") or {}).get("detection") or [])
    colors = [[int(v) for v in list(c)[:3]] for c in (cfg.get("class_colors") or {}).get("detection") or []]
    n = max(n_needed, len(names))
    names += [f"object {i}" for i in range(len(names), n)]
    colors += [PALETTE[(i + 1) % len(PALETTE)] for i in range(len(colors), n)]  # the dock's colours
    return names, colors


def pixel_size(store) -> tuple[tuple[float, float], str, str] | None:
    """``((y, x) size of a level-0 pixel, NGFF unit name, column suffix)``, or None when unknown.

    meta.json records it as ``image_pixel_size`` / ``pixel_size`` (one number or ``[y, x]``) with ``image_pixel_unit``
    / ``pixel_unit`` (micrometres when no unit is given, as slide readers report).
    """
    meta = store.meta
    size = meta.get("image_pixel_size", meta.get("pixel_size"))
    if size is None:
        return None
    values = [float(v) for v in (size if isinstance(size, (list, tuple)) else [size, size])][-2:]
    if len(values) == 1:
        values = values * 2
    if not all(v > 0 for v in values):
        return None
    unit = str(meta.get("image_pixel_unit", meta.get("pixel_unit")) or "um").strip()
    known = _UNITS.get(unit) or _UNITS.get(unit.lower())
    if known is None:
        return None
    return (values[0], values[1]), *known


def ngff_unit(unit) -> str | None:
    """The NGFF spelling of a length unit (napari/pint or reader spelling), None for pixels or unknown units."""
    known = _UNITS.get(str(unit).strip()) or _UNITS.get(str(unit).strip().lower())
    return known[0] if known else None
