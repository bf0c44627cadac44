"""Atomic file and folder writes: a path holds the old content or the new, never half of the new.

The house rule "nothing half-written ever looks complete" for every output the project writes (result stores and
the metadata in their root zarr.json, exports, batch manifests, checkpoints): write into a hidden sibling, then rename
it over the target.
A rename within one folder is atomic on POSIX and Windows (``os.replace``); a folder target is moved aside first,
because no OS renames a folder over a non-empty one. Standard library only: any layer may use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["remove", "replace_path", "sibling", "write_json_atomic", "write_text_atomic", "written_aside"]


def sibling(path: Path, suffix: str) -> Path:
    """A hidden, unique path next to ``path`` (same folder, so renaming it onto ``path`` is atomic)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.{suffix}")


def replace_path(src: Path, dst: Path) -> None:
    """Move ``src`` onto ``dst``; an old ``dst`` folder is moved aside first and removed only after the move, so
    ``dst`` is at every moment either the old result or the new one (stores and exports both rely on it)."""
    if dst.is_dir() and not dst.is_symlink():
        trash = sibling(dst, "replaced")
        os.replace(dst, trash)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(trash, dst)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(src, dst)


def remove(path: Path) -> None:
    """Delete a file or a folder tree if it exists (best effort: used to clean up after a failed write)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a flushed, fsynced sibling and a rename."""
    path = Path(path)
    tmp = sibling(path, "tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any, default: Callable[[Any], Any] | None = None, indent: int = 2) -> None:
    """``json.dumps`` then :func:`write_text_atomic` (serialising first, so a bad value never touches the disk)."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=default))


@contextlib.contextmanager
def written_aside(out: Path, folder: bool = False) -> Iterator[Path]:
    """Yield a hidden sibling path to write into; it replaces ``out`` only when the block ends without error.

    A crash, a full disk or an exception leaves ``out`` as it was (absent or the old file/folder), never a file that
    looks complete but is not. ``folder``: the sibling is created as an empty folder.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = sibling(out, "partial")
    try:
        if folder:
            tmp.mkdir()
        yield tmp
        replace_path(tmp, out)
    finally:
        remove(tmp)
