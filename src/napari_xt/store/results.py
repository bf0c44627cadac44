"""The result store: one zarr v3 folder that is the single source of truth of a run (viewer, resume, exporters).

Layout::

    STORE/zarr.json           root attrs["napari_xt"]: store_format 2, spec, model config + checksum, image
                              path/size/fingerprint, plan, times, software, summary, complete (:mod:`.meta`)
    STORE/labels/0, 1, ...    label pyramid (uint8, uint16 past 255 classes), strided 2x levels, NGFF attrs on labels/
    STORE/probabilities       (classes, y, x) uint8 0..255 at the analysis level (optional)
    STORE/done                bool per region id: the region's results are all on disk
    STORE/detections/table    (rows, 8) float64: y, x, h, w, cls, score, region_id, attempt (append-only)
    STORE/detections/attempt  int64 per region id: the attempt whose rows count (rows of other attempts are stale)
    STORE/window_scores       (rows, 1 + classes) float64: window_id, scores... (append-only, last row wins)
    STORE/image_scores        (classes,) float32, attrs class_names

``write_region`` writes pixels, then detections, then the attempt, and only then sets ``done``; a crash anywhere
before that leaves the region not done, and a redone region's earlier rows are ignored on read (never duplicated).
One writer process at a time; readers (the viewer) may read while it writes: zarr replaces whole chunk files, and
the metadata is republished in one rename. Format-1 stores (a ``meta.json`` beside ``zarr.json``) are still read.
Opening checks the layout against the store's own metadata first (:mod:`.schema`); done regions' chunks are
checked and repaired by :mod:`.check`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr

from .._atomic import replace_path
from ..errors import NotAStore, StoreDamaged, StoreError, StoreExists, StoreMismatch
from .chunkio import ChunkWriter
from .identity import Identity
from .label_pyramid import write_strided
from .layout import DET_COLUMNS, EVERY_CHUNK, StoreSpec, build_store, detection_rows, select_detections
from .meta import is_store, now_iso, read_meta, write_meta
from .read import CheckedArray, read_all
from .repair import StoreRepairs
from .schema import as_error, looks_like_store, root_damage, schema_damage
from .schema import rebuild as _rebuild

__all__ = ["ResultStore", "StoreSpec", "is_store", "read_meta"]

log = logging.getLogger(__name__)

class ResultStore(StoreRepairs):
    """A result store on disk; make one with :meth:`create`, open one with :meth:`open` / :meth:`open_for_resume`.

    ``rebuild``: make arrays whose layout is damaged again, empty (a resume, which then redoes their regions);
    otherwise a damaged layout is a :class:`StoreDamaged` before any array is read.
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r", rebuild: bool = False) -> None:
        if mode not in ("r", "r+"):
            raise StoreError(f"store {path}: mode must be 'r' or 'r+', not {mode!r}")
        self.path = Path(path)
        meta, root = root_damage(self.path)
        if root is not None or meta is None:
            self.refuse_non_store(self.path)
            assert root is not None
            raise root.error(self.path)
        self.mode = mode
        self._lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self.unreadable, self.rebuilt, self.repaired = {}, [], []
        self.meta = meta
        try:
            spec = dict(meta["spec"])
            spec["shape"] = tuple(spec["shape"])
            self.spec = StoreSpec(**spec)
        except Exception as err:  # a spec of another release (unknown fields) or a damaged one
            raise StoreDamaged(self.path, "zarr.json", f"its spec cannot be read ({type(err).__name__}: {err})",
                               fix="remake") from None
        damages = schema_damage(self.path, meta)
        if damages and not (rebuild and self.writable and all(d.rebuild for d in damages)):
            raise as_error(self.path, damages)
        if damages:
            self.rebuilt = _rebuild(self.path, self.spec, damages)
        try:
            # zarr's own types describe every node as array-or-group; this store's layout is fixed, so Any
            self._root: Any = cast(Any, zarr.open_group(str(self.path), mode=mode, zarr_format=3))  # type: ignore[arg-type]
            self._arrays: list = []
            if "labels" in self._root:
                group = self._root["labels"]
                n = len(group.attrs["ome"]["multiscales"][0]["datasets"])
                self._arrays = [group[str(i)] for i in range(n)]
            # readers get checked arrays: a chunk that cannot be decoded is a StoreDamaged naming it
            self.labels: list = [CheckedArray(a, self.path, f"labels/{i}") for i, a in enumerate(self._arrays)]
            self.probabilities: Any = self._root.get("probabilities")
            self._done_arr = self._root["done"]
            self._det = self._root["detections/table"]
            self._attempt = self._root["detections/attempt"]
            # in-memory mirrors of done/attempt for writers (None read-only: every write checks writable first)
            self._done: Any = self._read_ids(self._done_arr, "done") if self.writable else None
            self._attempts: Any = self._read_ids(self._attempt, "detections/attempt") if self.writable else None
            # direct chunk writers (store/chunkio.py): the same bytes zarr would write, without its per-call cost;
            # a store made with every_chunk_written keeps fill-only chunks as files (a missing one is lost data)
            w, keep = self.writable, bool(meta.get(EVERY_CHUNK))
            self._w_labels = [ChunkWriter(a, keep_empty=keep) for a in self._arrays] if w else []
            self._w_probs = ChunkWriter(self.probabilities, keep_empty=keep) \
                if w and self.probabilities is not None else None
            self._w_done: ChunkWriter | None = ChunkWriter(self._done_arr, keep_empty=keep) if w else None
            self._w_attempt: ChunkWriter | None = ChunkWriter(self._attempt, keep_empty=keep) if w else None
        except StoreError:
            raise
        except Exception as err:
            raise StoreError(f"store {self.path} is damaged or from another version "
                             f"({type(err).__name__}: {err}).") from err

    # -- making and opening -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, spec: StoreSpec, meta: dict[str, Any],
               overwrite: bool = False) -> ResultStore:
        """Make a new store at ``path``; an existing non-empty path is refused unless ``overwrite`` and it is a store.

        The store is built in a hidden sibling folder and moved into place, so ``path`` holds either nothing new or
        a complete empty store, never half of one.
        """
        path = Path(os.path.abspath(path))
        try:
            spec.validate()
        except ValueError as err:
            raise StoreError(f"cannot make store {path}: {err}") from None
        old = None
        if path.exists() and (path.is_file() or any(path.iterdir())):
            if not overwrite:
                ours = is_store(path) or looks_like_store(path)
                what = ("a result store" if is_store(path) else "a damaged result store" if ours
                        else "a file" if path.is_file() else "a non-empty folder")
                raise StoreExists(path, what, ours)
            if not is_store(path) and not looks_like_store(path):  # a damaged store may be made again
                raise NotAStore(path, "a file" if path.is_file() else "a non-empty folder")
            old = path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.creating")
        try:
            build_store(tmp, spec, meta)
            if old is None and path.is_dir():
                path.rmdir()  # empty: replaced by the new store
            replace_path(tmp, path)
        except OSError as err:
            raise StoreError(f"cannot make store {path}: {err}") from err
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return cls(path, mode="r+")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> ResultStore:
        return cls(path, mode=mode)

    @classmethod
    def open_for_resume(cls, path: str | os.PathLike, expected: Identity | Mapping[str, str],
                        cores: np.ndarray | None = None, deep: bool = False) -> ResultStore:
        """Open for writing after checking the store was made by the same model, image and plan as ``expected`` (an
        :class:`~.identity.Identity`, or a mapping of its metadata keys),
        and repair it: damaged arrays are made again, and every done region whose chunks are missing (or, ``deep``,
        cannot be decoded) is cleared, so the run redoes it (``store.repaired``; :func:`.check.repair`).
        ``cores``: each region's core from the run's plan (default: the plan rebuilt from the metadata)."""
        from .check import region_cores, repair

        path = Path(path)
        meta, root = root_damage(path)
        if root is not None or meta is None:
            cls.refuse_non_store(path)
            assert root is not None
            raise root.error(path)
        identity = expected if isinstance(expected, Identity) else Identity.from_meta(expected)
        problems = identity.mismatches(meta)
        if problems:
            raise StoreMismatch(path, [str(p) for p in problems])
        store = cls(path, mode="r+", rebuild=True)
        store._update_meta(resumed=[*store.meta.get("resumed", []), now_iso()])
        repair(store, region_cores(store.meta) if cores is None else cores, deep)
        return store

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def writable(self) -> bool:
        return self.mode == "r+"

    def _done_mask(self) -> np.ndarray:
        return self._done if self._done is not None else self.done_flags()  # readers see the writer's progress

    def is_done(self, region_id: int) -> bool:
        region_id = int(region_id)
        if not 0 <= region_id < self.spec.region_count:
            return False
        return bool(self._done_mask()[region_id])

    def done_ids(self) -> np.ndarray:
        return np.flatnonzero(self._done_mask())

    @property
    def n_done(self) -> int:
        return int(np.count_nonzero(self._done_mask()))

    @property
    def complete(self) -> bool:
        if not self.writable:
            self.refresh()
        return bool(self.meta.get("complete", False))

    def refresh(self) -> None:
        """Re-read the metadata (a reader following a running writer: it sees the old document or the new one)."""
        self.meta = read_meta(self.path)

    # -- writing ----------------------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"store {self.path} is open read-only; open it with mode='r+' to write.")

    def write_region(self, region_id: int, box: tuple[int, int, int, int], labels: np.ndarray | None,
                     probabilities: np.ndarray | None = None, detections: dict[str, np.ndarray] | None = None,
                     window_scores: dict[int, np.ndarray] | None = None) -> None:
        """Store one region's results (``box`` = its core, analysis px) and then, last, mark it done."""
        self._check_writable()
        region_id = int(region_id)
        y0, x0, y1, x1 = (int(v) for v in box)
        h, w = self.spec.shape
        if not 0 <= region_id < self.spec.region_count:
            raise StoreError(f"store {self.path}: region id {region_id} is outside 0..{self.spec.region_count - 1}.")
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise StoreError(f"store {self.path}: region {region_id} core {tuple(box)} is empty or outside the "
                             f"{h} x {w} label map.")
        labels = self._check_labels(region_id, labels, (y1 - y0, x1 - x0))
        probabilities = self._check_probabilities(region_id, probabilities, (y1 - y0, x1 - x0))
        rows = self._detection_rows(region_id, detections)
        with self._lock:
            if self._done[region_id]:  # a rewrite: the region is not done again until everything is rewritten
                self._set_done(region_id, False)
            if labels is not None:
                write_strided(self._w_labels, (y0, x0, y1, x1), labels, pool=self._write_pool())
            if probabilities is not None and self._w_probs is not None:
                self._w_probs[:, y0:y1, x0:x1] = probabilities
            attempt = self._append_detections(rows)
            for window_id, scores in (window_scores or {}).items():
                self.set_window_scores(window_id, scores)
            if self._attempts[region_id] != attempt:
                assert self._w_attempt is not None
                self._w_attempt[region_id : region_id + 1] = np.asarray([attempt])
                self._attempts[region_id] = attempt
            self._mark_done(region_id)

    def _write_pool(self) -> ThreadPoolExecutor | None:
        """Threads that write a region's label levels side by side (file renames dominate on a slow disk)."""
        if self._pool is None and len(self._w_labels) > 1:
            self._pool = ThreadPoolExecutor(min(4, len(self._w_labels)), thread_name_prefix="napari-xt-store")
        return self._pool

    def _check_labels(self, region_id, labels, shape):
        if labels is None:
            return None
        if not self.labels:
            raise StoreError(f"store {self.path} has no label map (made for 0 segmentation classes), but region "
                             f"{region_id} came with labels.")
        labels = np.asarray(labels)
        if labels.shape != shape:
            raise StoreError(f"store {self.path}: region {region_id} labels are {labels.shape}, its core is {shape}.")
        dtype = self.spec.label_dtype
        if labels.dtype != dtype:
            if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(dtype).max):
                raise StoreError(f"store {self.path}: region {region_id} labels span {labels.min()}..{labels.max()},"
                                 f" which does not fit {dtype}.")
            labels = labels.astype(dtype)
        return labels

    def _check_probabilities(self, region_id, probs, shape):
        if probs is None:
            return None
        if self.probabilities is None:
            log.debug("store %s keeps no probabilities; region %d's are dropped", self.path, region_id)
            return None
        probs = np.asarray(probs)
        if probs.shape != (self.spec.num_classes, *shape):
            raise StoreError(f"store {self.path}: region {region_id} probabilities are {probs.shape}, expected "
                             f"{(self.spec.num_classes, *shape)} (classes, y, x).")
        if np.issubdtype(probs.dtype, np.floating):
            probs = np.rint(np.clip(probs, 0.0, 1.0) * 255)
        return probs.astype(np.uint8, copy=False)

    def _detection_rows(self, region_id, detections) -> np.ndarray | None:
        try:
            return detection_rows(region_id, detections)
        except ValueError as err:
            raise StoreError(f"store {self.path}: region {region_id} {err}") from None

    def _append_detections(self, rows: np.ndarray | None) -> int:
        """Append rows; returns their attempt number (1 + first row index; 0 for no rows: a fresh number each time)."""
        if rows is None:
            return 0
        start = self._det.shape[0]
        rows[:, 7] = start + 1
        self._det.resize((start + len(rows), len(DET_COLUMNS)))  # a crash now leaves zero rows: attempt 0, ignored
        self._det[start:] = rows
        return start + 1

    def _set_done(self, region_id: int, value: bool) -> None:
        assert self._w_done is not None
        self._w_done[region_id : region_id + 1] = np.asarray([value])
        self._done[region_id] = value

    def _mark_done(self, region_id: int) -> None:
        self._set_done(region_id, True)

    # -- reading tables ---------------------------------------------------------------------------------------
    def detections(self) -> dict[str, np.ndarray]:
        """Detections of done regions (image-level coordinates as written), sorted by region id."""
        done = self._done_mask()  # read in the reverse of the write order: a running writer stays consistent
        return select_detections(self._read_table(), done, self.attempts())

    def set_window_scores(self, window_id: int, scores: np.ndarray | Sequence[float]) -> None:
        """Record a context window's class scores (the latest call for a window wins)."""
        self._check_writable()
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        with self._lock:
            if "window_scores" not in self._root:
                self._root.create_array("window_scores", shape=(0, 1 + len(scores)), chunks=(1024, 1 + len(scores)),
                                        dtype=np.float64, fill_value=np.nan)
            arr = self._root["window_scores"]
            if arr.shape[1] != 1 + len(scores):
                raise StoreError(f"store {self.path}: window {window_id} has {len(scores)} scores, earlier windows "
                                 f"had {arr.shape[1] - 1}.")
            n = arr.shape[0]
            arr.resize((n + 1, arr.shape[1]))
            arr[n] = np.concatenate([[float(window_id)], scores])

    def window_scores(self) -> dict[int, np.ndarray]:
        if "window_scores" not in self._root:
            return {}
        table, bad = read_all(self._root["window_scores"])
        if bad:
            raise StoreDamaged(self.path, "window_scores", "a chunk cannot be decoded", fix="verify")
        out = {}
        for row in table[~np.isnan(table[:, 0])]:
            out[int(row[0])] = row[1:].astype(np.float32)
        return out

    def mean_window_scores(self) -> np.ndarray | None:
        """The mean of every scored window's class scores (float32): the whole image's scores once every window of
        the plan is scored (only a complete run's; a cancelled run's windows are not the image). None without any."""
        windows = self.window_scores()
        if not windows:
            return None
        return np.mean(np.stack(list(windows.values())), axis=0).astype(np.float32)

    def set_image_scores(self, scores: np.ndarray | Sequence[float], class_names: Sequence[str] | None = None) -> None:
        self._check_writable()
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        with self._lock:
            arr = self._root.create_array("image_scores", shape=scores.shape, chunks=(max(1, len(scores)),),
                                          dtype=np.float32, fill_value=np.nan, overwrite=True)
            arr[:] = scores
            arr.attrs["class_names"] = [str(n) for n in (class_names or [])]

    def image_scores(self) -> tuple[np.ndarray, list[str]] | None:
        """``(scores, class_names)`` of the whole image, or None when none were set."""
        if "image_scores" not in self._root:
            return None
        arr = self._root["image_scores"]
        return arr[:], list(arr.attrs.get("class_names", []))

    # -- meta -------------------------------------------------------------------------------------------------
    def _update_meta(self, **fields) -> None:
        self._check_writable()
        with self._lock:  # root attributes are written here only (zarr's in-memory copy of them is not used again)
            self.meta = write_meta(self.path, {**self.meta, **fields})

    def finish(self, summary: dict) -> None:
        """Record the end time and summary and mark the store complete (every region write has returned by now, so
        ``complete`` is published after the data)."""
        self._update_meta(finished=now_iso(), summary=summary, complete=True)

    def close(self) -> None:
        """Nothing is buffered (every write is on disk when its call returns); drops the handles and threads."""
        self.labels, self._arrays, self.probabilities = [], [], None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"ResultStore({str(self.path)!r}, {self.spec.shape[0]} x {self.spec.shape[1]}, "
                f"{self.n_done}/{self.spec.region_count} regions done{', complete' if self.complete else ''})")

