"""What a batch runs on: command-line arguments expanded to image paths, and one result store name per image.

Arguments may be paths, globs (expanded here as well, because a quoted glob reaches us unexpanded and Windows shells
never expand them) or list files (``@list.txt``, or any argument ending in ``.txt``). A path that does not exist is
kept as an :class:`InputItem` with an error, so it is reported in the manifest instead of aborting hundreds of good
slides. Pure Python: no torch, no dask.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

STORE_SUFFIX = ".xt.zarr"
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputItem:
    """One image of a batch; ``error`` is set when it cannot even be submitted (missing path, empty glob...)."""

    path: str
    error: str | None = None


def is_list_file(arg: str) -> bool:
    return arg.startswith("@") or arg.lower().endswith(".txt")


def is_glob(arg: str) -> bool:
    """A pattern, unless a file with that literal name exists (names with brackets are legal)."""
    return bool(_GLOB_CHARS & set(arg)) and not os.path.exists(arg)


def expand_inputs(args: Sequence[str]) -> list[InputItem]:
    """Arguments in, images out: in argument order, duplicates (same real path) dropped, problems kept as items."""
    items: list[InputItem] = []
    for arg in args:
        if is_list_file(arg):
            items += _from_list_file(arg.removeprefix("@"))
        else:
            items += _expand_one(arg, base=None)
    return _unique(items)


def _expand_one(arg: str, base: Path | None) -> list[InputItem]:
    path = arg if base is None or os.path.isabs(os.path.expanduser(arg)) else str(base / arg)
    path = os.path.normpath(os.path.expanduser(path))
    if is_glob(path):
        matches = sorted(glob.glob(path, recursive=True))
        if not matches:
            return [InputItem(path, f"no file matches the pattern {path}")]
        return [InputItem(m) for m in matches]
    if not os.path.exists(path):
        return [InputItem(path, f"{path} does not exist")]
    return [InputItem(path)]


def _from_list_file(name: str) -> list[InputItem]:
    """One path or glob per line; blank lines and ``#`` comments skipped; relative lines are relative to the list."""
    list_path = Path(os.path.expanduser(name))
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        return [InputItem(str(list_path), f"list file {list_path} cannot be read ({getattr(err, 'strerror', err)})")]
    items: list[InputItem] = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        items += _expand_one(entry, base=list_path.parent)
    return items


def _unique(items: Iterable[InputItem]) -> list[InputItem]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = os.path.realpath(item.path)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def image_stem(path: str) -> str:
    """``a/slide.ome.tif`` -> ``slide``; ``b/scan.svs`` -> ``scan``; ``c/x.ome.zarr/`` -> ``x``."""
    name = Path(os.path.normpath(path)).name
    stem, dot, _suffix = name.rpartition(".")
    if not dot or not stem:
        return name
    if stem.lower().endswith(".ome"):
        stem = stem[:-4]
    return stem or name


def store_paths(paths: Sequence[str], out_dir: str | os.PathLike) -> dict[str, Path]:
    """``<out_dir>/<stem>.xt.zarr`` per image; stems shared by different images all get a short hash of their path.

    The hash is of the absolute path, so the same command always maps an image to the same store (resume and skip
    depend on that). Stems are compared case-insensitively: ``A.tif`` and ``a.tif`` must not share a store on
    macOS or Windows.
    """
    out_dir = Path(out_dir)
    stems = {p: image_stem(p) for p in paths}
    counts: dict[str, int] = {}
    for p in dict.fromkeys(os.path.abspath(p) for p in paths):
        key = image_stem(p).lower()
        counts[key] = counts.get(key, 0) + 1
    names = {}
    for p in paths:
        stem = stems[p]
        if counts[stem.lower()] > 1:
            stem = f"{stem}-{path_hash(p)}"
        names[p] = out_dir / f"{stem}{STORE_SUFFIX}"
    return names


def path_hash(path: str) -> str:
    return hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:6]
