"""The part of :class:`~.store.ResultStore` that finds and mends damage: raw arrays for the checks, tolerant reads of
the per-region arrays, and the repair's writes. Kept apart so ``store.py`` stays the writer's contract.

Why the reads are tolerant: the done flags and detection attempts are read whole when a store opens; one garbage
chunk among them must become a named damage (those regions are redone), not a store that cannot be opened at all.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StoreDamaged, StoreError
from .meta import now_iso
from .read import read_all
from .schema import Damage, looks_like_store

log = logging.getLogger(__name__)

__all__ = ["StoreRepairs"]


class StoreRepairs:
    """Mixed into :class:`~.store.ResultStore`: what :mod:`.check` reads and :func:`.check.repair`
    writes. The attributes it uses are set by ``ResultStore.__init__``."""

    path: Path
    meta: dict[str, Any]
    _root: Any
    _arrays: list[Any]
    _done: Any
    _attempts: Any
    _done_arr: Any
    _attempt: Any
    _det: Any
    _w_done: Any
    _w_attempt: Any
    #: per-region arrays' chunks that could not be decoded when the store was opened (part -> chunk indices)
    unreadable: dict[str, list[tuple[int, ...]]]
    #: arrays made again (empty) when a resume opened a store whose layout was damaged
    rebuilt: list[str]
    #: regions a repair cleared for the run to redo (see :func:`.check.repair`)
    repaired: list[int]

    @staticmethod
    def refuse_non_store(path: Path) -> None:
        """A path that is no result store, even a damaged one: the plain "not a store" error."""
        if not looks_like_store(path):
            why = "does not exist" if not path.exists() else "is not a napari-xt result store"
            raise StoreError(f"{path} {why} (no zarr.json with napari-xt attributes).", path)

    def _read_ids(self, arr: Any, part: str) -> np.ndarray:
        values, bad = read_all(arr)
        if bad:
            self.unreadable[part] = bad
            log.warning("store %s: %d chunk(s) of %s cannot be decoded; their regions count as not done", self.path,
                        len(bad), part)
        return values

    def done_flags(self) -> np.ndarray:
        """The done flag of every region (a reader re-reads them: it may follow a running writer)."""
        return self._done.copy() if self._done is not None else self._read_ids(self._done_arr, "done")

    def attempts(self) -> np.ndarray:
        return self._attempts.copy() if self._attempts is not None else self._read_ids(self._attempt,
                                                                                        "detections/attempt")

    def raw(self, part: str) -> Any:
        """The zarr array at ``part`` (None when the store has none), bypassing the readers' checks."""
        return {"done": self._done_arr, "detections/attempt": self._attempt, "detections/table": self._det,
                "probabilities": self._root.get("probabilities") if part == "probabilities" else None}[part]

    def raw_labels(self) -> list[Any]:
        return list(self._arrays)

    def windowed_ids(self) -> np.ndarray:
        """The ids of every region the plan runs (those of its windows; skipped regions are in none)."""
        windows = (self.meta.get("plan") or {}).get("windows") or []
        ids = np.asarray(sorted({int(i) for w in windows for i in w}), dtype=np.int64)
        return ids[(ids >= 0) & (ids < int(self._done_arr.shape[0]))]

    def _read_table(self) -> np.ndarray:
        values, bad = read_all(self._det)
        if bad:
            keys = ", ".join("c/" + "/".join(map(str, i)) for i in bad[:4])
            raise StoreDamaged(self.path, "detections/table", f"chunks {keys} cannot be decoded", fix="verify")
        return values

    def damage(self, deep: bool = False, cores: np.ndarray | None = None) -> list[Damage]:
        """Chunk-level damage (:func:`.check.chunk_damage`); ``cores`` default to the plan in the metadata."""
        from .check import chunk_damage, region_cores

        found, _ = chunk_damage(self, region_cores(self.meta) if cores is None else cores, deep)  # type: ignore[arg-type]
        return found

    def record_repair(self, redo: list[int], parts: list[str], files: list[str]) -> None:
        """The repair's writes, in a crash-safe order: not complete, then undecodable chunk files deleted, then the
        spoiled regions not done (done and attempt arrays rewritten whole from the mirrors, so their missing chunk
        files come back), then the repair recorded."""
        self._update_meta(complete=False)  # type: ignore[attr-defined]
        for rel in files:
            (self.path / rel).unlink(missing_ok=True)
        ids = np.asarray(redo, dtype=np.int64)
        self._done[ids] = False
        self._w_done[0:len(self._done)] = self._done
        self._w_attempt[0:len(self._attempts)] = self._attempts
        self.repaired = list(redo)
        repairs = [*self.meta.get("repairs", []), {"at": now_iso(), "regions": len(redo), "parts": parts}]
        self._update_meta(repairs=repairs)  # type: ignore[attr-defined]
        log.info("store %s: %d region(s) will be redone (%s)", self.path, len(redo), ", ".join(parts))
