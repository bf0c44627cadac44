"""What every exporter shares: the refusal rules, the write-aside-then-rename output (:mod:`napari_xt._atomic`), and
what a store says about its classes (colours from :mod:`napari_xt.palette`) and its physical pixel size.

Each exporter reads a :class:`~napari_xt.store.ResultStore` and nothing else, so these helpers take the
store (or its path) and answer in plain Python types.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from pathlib import Path

from .. import __version__
from .._atomic import remove, written_aside
from ..palette import DETECTION_OFFSET, PALETTE, fill_colors

# PALETTE, remove and written_aside are re-exported for the exporters and the npe2 writers (``_writer.py``); they
# live in napari_xt.palette and napari_xt._atomic.
__all__ = ["PALETTE", "ExportError", "check_complete", "check_out", "detection_classes", "ngff_unit", "open_store",
           "pixel_size", "provenance", "remove", "segmentation_classes", "written_aside"]

#: unit spellings found in images, store metadata and napari -> (NGFF unit name, short column suffix)
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
    """A :class:`ResultStore` from a store or a path; a path that is not a store becomes an :class:`ExportError`, a
    damaged store stays a :class:`~napari_xt.errors.StoreDamaged` (the edges add how to repair it)."""
    from ..errors import StoreDamaged, StoreError
    from ..store import ResultStore

    if isinstance(store, ResultStore):
        return store
    try:
        return ResultStore.open(store)
    except StoreDamaged:
        raise
    except StoreError as err:
        raise ExportError(str(err)) from None


def check_complete(store, partial: bool) -> bool:
    """Refuse an unfinished or damaged run unless ``partial``; returns True when the output has to say it is partial.

    Damaged: a done region whose chunk files are missing (a file listing, :mod:`napari_xt.store.check`)
    would read as background, so it is a :class:`~napari_xt.errors.StoreDamaged`, never a silently empty export.
    """
    from ..store.check import as_error

    damages = store.damage()
    if damages:
        if not partial:
            raise as_error(store.path, damages)
        regions = len({r for d in damages for r in d.regions})
        warnings.warn(f"store {store.path} is damaged ({', '.join(dict.fromkeys(d.part for d in damages))}: "
                      f"{regions} region(s)); the export holds what is intact and says it is partial.", UserWarning,
                      stacklevel=3)
        return True
    if store.complete:
        return False
    total = store.spec.region_count
    if not partial:
        raise ExportError(f"store {store.path} is not finished ({store.n_done} of {total} regions done); finish or "
                          "resume the run, or export what is there with partial=True (--partial).")
    return True


#: How detections are written: ``auto`` is boxes when the model measured object sizes, points otherwise.
DETECTIONS_AS = ("auto", "points", "boxes")


def detection_shape(store, detections_as: str) -> str:
    """``points`` or ``boxes`` for ``detections_as`` (``auto``: boxes when any detection has a size, as a model
    trained on boxes gives; a point-trained model's sizes are zero and stay points)."""
    if detections_as not in DETECTIONS_AS:
        raise ExportError(f"detections_as must be 'auto', 'points' or 'boxes', not {detections_as!r}.")
    if detections_as != "auto":
        return detections_as
    det = store.detections()
    sized = len(det["w"]) and bool(((det["w"] > 0) & (det["h"] > 0)).any())
    return "boxes" if sized else "points"


def check_out(out, overwrite: bool, what: str = "output") -> Path:
    """The absolute output path; an existing one is refused unless ``overwrite`` (and is never half-replaced)."""
    from ..store import is_store

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
    return names, fill_colors(store.spec.class_colors, n)


def detection_classes(store, n_needed: int) -> tuple[list[str], list[list[int]]]:
    """Names and RGB colours of the detection classes (from the model config in the store's metadata, else generic)."""
    cfg = store.meta.get("model_config") or {}
    names = list((cfg.get("class_names") or {}).get("detection") or [])
    n = max(n_needed, len(names))
    names += [f"object {i}" for i in range(len(names), n)]
    return names, fill_colors((cfg.get("class_colors") or {}).get("detection"), n, first=DETECTION_OFFSET)


def pixel_size(store) -> tuple[tuple[float, float], str, str] | None:
    """``((y, x) size of a level-0 pixel, NGFF unit name, column suffix)``, or None when unknown.

    The store's metadata records it as ``image_pixel_size`` / ``pixel_size`` (one number or ``[y, x]``) with
    ``image_pixel_unit`` / ``pixel_unit`` (micrometres when no unit is given, as slide readers report).
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
    if unit == "deg":  # a scene in degrees: metres at its centre (pyproj), or no physical size without it
        from ..errors import GeoDependencyMissing
        from ..io._geo import Georef

        georef = Georef.from_dict(meta.get("image_georef"))
        shape = meta.get("image_shape") or [0, 0]
        try:
            metres = georef.metres_per_pixel((int(shape[0]), int(shape[1]))) if georef else None
        except GeoDependencyMissing:
            metres = None
        return ((metres[0], metres[1]), "meter", "m") if metres else None
    known = _UNITS.get(unit) or _UNITS.get(unit.lower())
    if known is None:
        return None
    return (values[0], values[1]), *known


def ngff_unit(unit) -> str | None:
    """The NGFF spelling of a length unit (napari/pint or reader spelling), None for pixels or unknown units."""
    known = _UNITS.get(str(unit).strip()) or _UNITS.get(str(unit).strip().lower())
    return known[0] if known else None
