"""``napari-xt verify``: a store checked end to end (root metadata, every array's layout, every done region's
chunks) and reported, never repaired (:func:`.check.repair` does that on a resume).

Apart from :mod:`.check` because it opens the store (:class:`~.results.ResultStore`), which itself checks and repairs
through :mod:`.check`: the checks never import the store back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .check import chunk_damage, region_cores
from .results import ResultStore
from .schema import Damage, root_damage, schema_damage

__all__ = ["Report", "verify"]


@dataclass
class Report:
    """What ``napari-xt verify`` prints: the damages (by region through :meth:`by_region`) and what was not checked."""

    path: Path
    damages: list[Damage]
    notes: list[str] = field(default_factory=list)
    regions_total: int = 0
    regions_done: int = 0
    deep: bool = False
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.damages

    def by_region(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for d in self.damages:
            for r in d.regions:
                out.setdefault(r, []).append(d.part)
        return dict(sorted(out.items()))

    @property
    def fix(self) -> str:
        """The strongest fix any damage needs: ``remake`` > ``verify`` > ``resume`` ("" when sound)."""
        fixes = {d.fix for d in self.damages}
        return next((f for f in ("remake", "verify", "resume") if f in fixes), "")


def verify(path: str | Path, deep: bool = False) -> Report:
    """Check the store at ``path`` (root metadata, every array's layout, every done region's chunks); never raises
    for damage, only reports it (a path that is not a store at all is a :class:`~napari_xt.errors.StoreError`)."""
    t0, path = time.perf_counter(), Path(path)
    meta, root = root_damage(path)
    if root is not None or meta is None:
        ResultStore.refuse_non_store(path)
        return Report(path, [root] if root else [], deep=deep, seconds=time.perf_counter() - t0)
    schema = schema_damage(path, meta)
    if schema:
        note = "the chunks are checked once the damaged arrays are made again (a resume does it)"
        return Report(path, schema, [note], deep=deep, seconds=time.perf_counter() - t0, meta=meta)
    store = ResultStore.open(path)
    damages, notes = chunk_damage(store, region_cores(store.meta), deep)
    return Report(path, damages, notes, store.spec.region_count, store.n_done, deep, time.perf_counter() - t0,
                  store.meta)
