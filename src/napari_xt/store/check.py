"""Does every region a store calls done still have its results on disk? Found cheaply, by region, and repaired.

Why: the done flags were trusted. A store whose label chunks were deleted (a copy cut short, a lazily synced cloud
folder) or overwritten resumed as "24 done, 0 new" and exported an empty GeoJSON, because zarr reads a missing chunk
as its fill value. Here each done region's chunks are looked up:

* **cheap** (every resume, export, review, batch): a file listing. Stores made since ``every_chunk_written`` write
  every chunk a region touches, fill-only ones too (:mod:`.chunkio`), so a missing file is lost data. Also: a store
  marked complete whose plan has regions not done; a region whose detection rows are gone.
* **deep** (``napari-xt verify --deep``, ``predict --resume --verify``): every chunk file is decoded.

A region owns the chunks holding its core's sample points on each label level (:func:`.label_pyramid.strided_parts`), so
a lost lower-level chunk shared by 16 regions spoils all 16. :func:`repair` clears the spoiled regions' done flags
and deletes undecodable chunk files, so the run redoes exactly those regions and the store ends equal to a fresh run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .chunkio import chunk_layout, decode_chunk
from .layout import EVERY_CHUNK, ROWS_CHUNK
from .read import chunk_key, read_all
from .schema import Damage, as_error

if TYPE_CHECKING:
    from .results import ResultStore

__all__ = ["as_error", "chunk_damage", "region_cores", "repair"]


def region_cores(meta: dict[str, Any]) -> np.ndarray | None:
    """Every region's core ``(y0, x0, y1, x1)`` (analysis px) from the plan in a store's metadata, or None when the
    plan does not rebuild (a hand-made store, another tiling rule)."""
    from ..engine.store_plan import plan_from_meta

    plan = plan_from_meta(meta)
    if plan is None:
        return None
    return np.asarray([r.core for r in plan.regions], dtype=np.int64).reshape(-1, 4)


def _listing(folder: Path, ndim: int) -> set[tuple[int, ...]]:
    """Chunk indices that have a file under ``folder/c`` (hidden ``.partial`` files of a writer are not chunks)."""
    found: set[tuple[int, ...]] = set()

    def walk(path: Path, prefix: tuple[int, ...]) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            if not entry.name.isdigit():
                continue
            index = (*prefix, int(entry.name))
            if len(index) == ndim:
                if entry.is_file():
                    found.add(index)
            elif entry.is_dir():
                walk(Path(entry.path), index)

    walk(folder / "c", ())
    return found


def _undecodable(arr: Any, present: set[tuple[int, ...]]) -> set[tuple[int, ...]]:
    """The chunks among ``present`` whose files do not decode to a chunk (read directly when the layout allows)."""
    layout = chunk_layout(arr)
    if layout is None:
        return set(read_all(arr)[1])
    folder, zstd, chunks, key_of = layout
    dtype = np.dtype(arr.dtype).newbyteorder("<") if np.dtype(arr.dtype).itemsize > 1 else np.dtype(arr.dtype)
    bad: set[tuple[int, ...]] = set()
    for index in present:
        try:
            decode_chunk((folder / key_of(index)).read_bytes(), zstd, chunks, dtype)
        except Exception:  # zstd errors are RuntimeErrors, sizes ValueErrors, files OSErrors
            bad.add(index)
    return bad


def _owners(bad: np.ndarray, cores: np.ndarray, ids: np.ndarray, step: int, chunk: tuple[int, int]) -> np.ndarray:
    """Ids (of ``ids``) whose cores own a sample point of a level (``step`` = 2**level) inside a ``bad`` chunk."""
    if len(ids) == 0 or not bad.any():
        return np.zeros(0, np.int64)
    y0, x0, y1, x1 = cores[ids].T
    i0, i1, j0, j1 = -(-y0 // step), -(-y1 // step), -(-x0 // step), -(-x1 // step)
    has = (i0 < i1) & (j0 < j1)
    gh, gw = bad.shape
    ci0, ci1 = np.clip(i0 // chunk[0], 0, gh - 1), np.clip((i1 - 1) // chunk[0], 0, gh - 1)
    cj0, cj1 = np.clip(j0 // chunk[1], 0, gw - 1), np.clip((j1 - 1) // chunk[1], 0, gw - 1)
    s = np.zeros((gh + 1, gw + 1), np.int64)
    s[1:, 1:] = bad.astype(np.int64).cumsum(0).cumsum(1)
    count = s[ci1 + 1, cj1 + 1] - s[ci0, cj1 + 1] - s[ci1 + 1, cj0] + s[ci0, cj0]
    return ids[has & (count > 0)]


def _grid(shape: tuple[int, ...], chunks: tuple[int, ...], indices: set[tuple[int, ...]]) -> np.ndarray:
    """A boolean chunk grid of the last two dims (any leading index: the probabilities' classes) set at ``indices``."""
    grid = np.zeros([-(-n // c) for n, c in zip(shape[-2:], chunks[-2:], strict=True)], bool)
    for index in indices:
        grid[index[-2:]] = True
    return grid


def _pixel_damage(store: ResultStore, part: str, arr: Any, step: int, cores: np.ndarray | None, done: np.ndarray,
                  deep: bool, every: bool) -> list[Damage]:
    shape, chunks = tuple(arr.shape), tuple(arr.chunks)
    present = _listing(store.path / part, len(shape))
    out = []
    if cores is not None and every:
        full = set(np.ndindex(*[-(-n // c) for n, c in zip(shape, chunks, strict=True)]))
        missing = _owners(_grid(shape, chunks, full - present), cores, done, step, chunks[-2:])
        if len(missing):
            out.append(Damage(part, "chunk files of done regions are missing", tuple(missing.tolist())))
    if deep:
        bad = _undecodable(arr, present)
        if bad:
            owners = _owners(_grid(shape, chunks, bad), cores, done, step, chunks[-2:]) if cores is not None \
                else np.zeros(0, np.int64)
            keys = tuple(f"{part}/{chunk_key(i)}" for i in sorted(bad))
            out.append(Damage(part, f"{len(bad)} chunk file{'s' if len(bad) != 1 else ''} cannot be decoded",
                              tuple(int(r) for r in owners), "verify", keys))
    return out


def _ids_damage(store: ResultStore, part: str, arr: Any, done: np.ndarray, every: bool) -> list[Damage]:
    """Missing or undecodable chunks of the per-region arrays (done flags, detection attempts)."""
    out = []
    n, c = int(arr.shape[0]), int(arr.chunks[0])
    lost = {i for (i,) in store.unreadable.get(part, [])}
    if every:
        lost |= set(range(-(-n // c))) - {i for (i,) in _listing(store.path / part, 1)}
    for k in sorted(lost):
        ids = np.arange(k * c, min(n, (k + 1) * c))
        if part != "done":
            spoiled = ids[done[ids]]  # their detections are no longer found
        else:  # they read as not done: a complete store claims them, an unfinished one simply redoes them
            spoiled = ids[np.isin(ids, store.windowed_ids())] if store.meta.get("complete") else ids[:0]
        out.append(Damage(part, f"chunk {chunk_key((k,))} is missing or cannot be decoded",
                          tuple(spoiled.tolist()), chunks=(f"{part}/{chunk_key((k,))}",)))
    return out


def _table_damage(store: ResultStore, done: np.ndarray, deep: bool) -> list[Damage]:
    """Done regions whose detection rows are gone: past the table's end, in a missing or undecodable chunk."""
    attempts = store.attempts()
    table_arr = store.raw("detections/table")
    rows = int(table_arr.shape[0])
    ids = np.flatnonzero(done & (attempts > 0))
    first = attempts[ids] - 1
    present = {i for (i, _) in _listing(store.path / "detections/table", 2)}
    lost = set(range(-(-rows // ROWS_CHUNK))) - present
    bad: set[int] = set()
    table = None
    if deep:
        table, unreadable = read_all(table_arr)
        bad = {i for (i, _) in unreadable} & present
        lost |= bad
    spoiled = set(ids[(first >= rows) | np.isin(first // ROWS_CHUNK, sorted(lost))].tolist())
    if table is not None:
        inside = first < rows
        row_ok = np.zeros(len(ids), bool)
        row_ok[inside] = (table[first[inside], 6] == ids[inside]) & (table[first[inside], 7] == first[inside] + 1)
        spoiled |= set(ids[~row_ok].tolist())
        for k in lost:  # a region whose rows run on into a lost chunk from the one before
            end = k * ROWS_CHUNK - 1
            if 0 <= end < rows and (end // ROWS_CHUNK) not in lost:
                r, a = int(table[end, 6]), int(table[end, 7])
                if 0 <= r < len(done) and done[r] and a > 0 and attempts[r] == a:
                    spoiled.add(r)
    keys = tuple(f"detections/table/{chunk_key((k, 0))}" for k in sorted(bad))
    if not spoiled and not keys:
        return []
    return [Damage("detections/table", "the detection rows of done regions are missing or cannot be decoded",
                   tuple(sorted(spoiled)), "verify" if keys else "resume", keys)]


def chunk_damage(store: ResultStore, cores: np.ndarray | None, deep: bool = False) -> tuple[list[Damage], list[str]]:
    """Damage below the layout (see the module), and notes on what could not be checked; ``store`` is open."""
    notes = []
    done = store.done_flags()
    every = bool(store.meta.get(EVERY_CHUNK))
    if not every:
        notes.append("made by an earlier napari-xt that leaves background-only chunks out, so missing label chunks "
                     "cannot be told from background" + ("" if deep else "; --deep still decodes every chunk"))
    if cores is not None and len(cores) != len(done):
        cores = None
    if cores is None:
        notes.append("its plan does not rebuild, so chunks cannot be mapped to regions")
    damages: list[Damage] = []
    if store.meta.get("complete"):
        planned = store.windowed_ids()
        open_ids = planned[~done[planned]]
        if len(open_ids):
            damages.append(Damage("done", f"the run is marked complete but {len(open_ids)} of its regions are not "
                                          "done", tuple(open_ids.tolist())))
    for part in ("done", "detections/attempt"):
        damages += _ids_damage(store, part, store.raw(part), done, every)
    done_ids = np.flatnonzero(done)
    for level, arr in enumerate(store.raw_labels()):
        damages += _pixel_damage(store, f"labels/{level}", arr, 1 << level, cores, done_ids, deep, every)
    if store.raw("probabilities") is not None:
        damages += _pixel_damage(store, "probabilities", store.raw("probabilities"), 1, cores, done_ids, deep, every)
    damages += _table_damage(store, done, deep)
    return damages, notes


def repair(store: ResultStore, cores: np.ndarray | None, deep: bool = False) -> list[int]:
    """Clear the done flags of every region a damage spoils and delete undecodable chunk files, so a run redoes them.

    ``store`` is open for writing (its damaged arrays already rebuilt by the open: ``store.rebuilt``). Returns the
    regions to redo (done ones cleared, and those a complete store claimed but had lost); the store is marked not
    complete first and the repair is recorded in its metadata (``repairs``).
    """
    damages, _ = chunk_damage(store, cores, deep)
    done = store.done_flags()
    spoiled: set[int] = set()
    for part in store.rebuilt:
        spoiled |= _rebuilt_spoils(store, part, cores, done)
    for d in damages:
        spoiled |= set(d.regions)
    files = [c for d in damages if d.fix == "verify" or d.part in ("done", "detections/attempt") for c in d.chunks]
    if not (spoiled or files or store.rebuilt):
        return []
    redo = sorted(r for r in spoiled if 0 <= r < len(done))
    store.record_repair(redo, sorted({d.part for d in damages} | set(store.rebuilt)), files)
    return redo


def _rebuilt_spoils(store: ResultStore, part: str, cores: np.ndarray | None, done: np.ndarray) -> set[int]:
    """The done regions whose results lived in an array that was made again (empty)."""
    ids = np.flatnonzero(done)
    if part.startswith("labels/") and cores is not None:
        level = int(part.split("/")[1])
        arr = store.raw_labels()[level]
        grid = np.ones([-(-n // c) for n, c in zip(arr.shape, arr.chunks, strict=True)], bool)
        return set(_owners(grid, cores, ids, 1 << level, tuple(arr.chunks)).tolist())
    if part == "detections/table":
        return set(ids[store.attempts()[ids] > 0].tolist())
    if part in ("done", "image_scores"):
        return set()
    return set(ids.tolist())  # the pyramid, probabilities, attempts, window scores: every done region
