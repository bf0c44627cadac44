"""The Fine-tune preview's throw-away result stores: where they go, who owns one, and cleaning up after a crash.

Each preview writes a store into ``previews/`` of the user cache and the tab deletes the previous one once the new
one shows. A napari closed (or killed) while a preview showed left its store behind, and nothing ever deleted it:
a few MB to GB per crash, forever. Each store now has an owner file beside it (``<store>.owner``: host and process
id); before a new preview, stores whose owner process is gone (on this host), or that have no owner file and were
last touched over a day ago, are deleted. A store another live napari shows is never touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from .layers import user_cache_dir

__all__ = ["claim_preview", "discard_preview", "preview_folder", "sweep_stale_previews"]

ORPHAN_AGE_S = 24 * 3600  # a store without an owner file (made before owner files existed) is stale after this


def preview_folder(folder: str | None = None) -> Path:
    return Path(folder) if folder else user_cache_dir() / "previews"


def _owner_file(store: Path) -> Path:
    return store.with_name(store.name + ".owner")


def claim_preview(store: str | Path) -> None:
    """Mark ``store`` as this process's (written before the run makes the store, so no sweep sees it unowned)."""
    path = Path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    _owner_file(path).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def _owner_alive(owner: Path) -> bool:
    try:
        host, pid = owner.read_text().split()
        if host != socket.gethostname():
            return True  # another machine's process (a shared cache folder): not ours to judge
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except (OSError, ValueError):
        return False  # unreadable or garbled: nobody can be relying on it


def _is_stale(store: Path, now: float) -> bool:
    owner = _owner_file(store)
    if owner.exists():
        return not _owner_alive(owner)
    try:
        return now - store.stat().st_mtime > ORPHAN_AGE_S
    except OSError:
        return False


def discard_preview(store: str | Path | None, folder: str | None = None) -> None:
    """Delete a preview store the tab no longer shows (only ever inside the previews folder, only a result store),
    and its owner file."""
    if not store:
        return
    from ..store import is_store

    path, root = Path(store).resolve(), preview_folder(folder).resolve()
    if root in path.parents and is_store(path):
        shutil.rmtree(path, ignore_errors=True)
        _owner_file(path).unlink(missing_ok=True)


def sweep_stale_previews(folder: str | None = None) -> list[Path]:
    """Delete the preview stores left behind by processes that are gone; returns what was deleted."""
    from ..store import is_store

    root = preview_folder(folder)
    if not root.is_dir():
        return []
    now, gone = time.time(), []
    for path in sorted(root.iterdir()):
        if path.is_dir() and is_store(path) and _is_stale(path, now):
            discard_preview(path, folder)
            gone.append(path)
        elif path.suffix == ".owner" and not path.with_name(path.name[: -len(".owner")]).exists():
            path.unlink(missing_ok=True)  # an owner file whose store is gone
    return gone
