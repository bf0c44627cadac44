"""Several context windows stepped in lockstep, each with its own row of the context memory (issue 14).

Why: a window holds few regions (16 with ``--window-size 4``) and its regions must go through the context encoder
in order, so batching consecutive regions of one window leaves a GPU batch small and serial. Here a *cohort* of up
to ``window_batch`` windows runs together: every step takes the next ``chunk`` regions of each window, encodes them
as one batch, and steps the context with the memories stacked along the batch dimension (``init_memory(B)``; the
encoders treat batch rows as independent windows). A window's outputs are those of streaming it alone.

Rules that keep that exact:
* every window of a step consumes the same number of regions, so the memory's shared counters (tokens seen) stay
  right for every row; a window with fewer regions left (an edge window, a failed read) makes the step shorter;
* a window that has no regions left leaves the cohort: its memory row is classified (window scores) and dropped
  (``select_memory``), and the others go on;
* out of memory: fewer regions per window first, then the cohort is split into halves that step one after the
  other (each with its half of the memory rows), never skipping a region;
* regions already done (a resumed window) are encoded again for the context but not rewritten (the writer checks).

The reader is fed the cohort's regions in the order the steps will want them (:meth:`Cohort.read_order`), so the
prefetch pool decodes exactly what comes next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .plan import Plan, Region

__all__ = ["Cohort", "Lockstep", "take_companions"]

Item = tuple[Region, np.ndarray]


@dataclass
class Cohort:
    """Windows run together: ``regions[w]`` is window ``w``'s stream, in order."""

    windows: list[int]
    regions: dict[int, list[Region]]
    first_chunk: int  # regions per window in the first step (1 for a run's first cohort: a quick first overlay)
    chunk: int  # regions per window in the other steps

    @classmethod
    def of(cls, plan: Plan, windows: list[int], first_chunk: int, chunk: int) -> Cohort:
        return cls(list(windows), {w: [plan.regions[i] for i in plan.windows[w]] for w in windows},
                   max(1, first_chunk), max(1, chunk))

    def read_order(self) -> Iterator[Region]:
        """Every region of the cohort once, in the order the lockstep steps consume them."""
        starts = dict.fromkeys(self.windows, 0)
        size = self.first_chunk
        while any(starts[w] < len(self.regions[w]) for w in self.windows):
            for w in self.windows:
                yield from self.regions[w][starts[w] : starts[w] + size]
                starts[w] += size
            size = self.chunk

    @property
    def n_regions(self) -> int:
        return sum(len(r) for r in self.regions.values())


def take_companions(pending: list[int], leader: int, has_work: Callable[[int], bool], length: Callable[[int], int],
                    n: int, lookahead: int = 4) -> list[int]:
    """Up to ``n`` windows with work left to run beside ``leader``, taken out of ``pending`` (which is updated).

    They come from the next ``lookahead * (n + 1)`` pending windows, those as long as the leader first (they step
    together to the end, so no batch row goes idle), then any, each group in queue order; windows found to have no
    work left are dropped from ``pending``. The leader (the first window with work, taken by the caller) keeps the
    priority order.
    """
    if n <= 0:
        return []
    scan = pending[: lookahead * (n + 1)]
    ready = [w for w in scan if has_work(w)]
    for w in scan:
        if w not in ready:
            pending.remove(w)
    same = [w for w in ready if length(w) == length(leader)]
    others = [w for w in ready if length(w) != length(leader)]
    picked = (same + others)[:n]
    for w in picked:
        pending.remove(w)
    return picked


@dataclass
class _Group:
    """Windows stepping together with one memory (row ``i`` is ``windows[i]``); None until the first step."""

    windows: list[int]
    memory: Any = None


@dataclass
class Lockstep:
    """Steps one cohort: pulls its regions from the reader, runs the model, hands jobs on; a generator that yields
    after every job it hands on (the one-thread path yields results there).

    The callables are the run's: ``forward(items, memory or None, n_windows) -> (memory, job)`` (a fresh memory
    of ``n_windows`` rows for None; raises on out-of-memory), ``select(memory, rows)``, ``finish(last_region,
    memory_row or None)`` (a window is over: its scores), ``failed(region, error)`` (a read error), ``submit(job)``,
    ``shrink(k, n_windows) -> bool`` (after out-of-memory on ``k`` regions per window: a smaller step next; False
    when none is left), ``chunk()`` (regions per window now) and ``stopped()`` (cancel).
    """

    cohort: Cohort
    stream: Iterator[tuple[Region, np.ndarray | BaseException]]
    forward: Callable[[list[Item], Any, int], tuple[Any, Any]]
    select: Callable[[Any, list[int]], Any]
    finish: Callable[[Region, Any], None]
    failed: Callable[[Region, BaseException], None]
    submit: Callable[[Any], None]
    is_oom: Callable[[BaseException], bool]
    shrink: Callable[[int, int], bool]
    chunk: Callable[[], int]
    stopped: Callable[[], bool]
    first_step: bool = False
    _left: dict[int, int] = field(default_factory=dict)
    _buffers: dict[int, deque] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._left = {w: len(self.cohort.regions[w]) for w in self.cohort.windows}
        self._buffers = {w: deque() for w in self.cohort.windows}

    def run(self) -> Generator[None, None, None]:
        groups = [_Group(list(self.cohort.windows))]
        while groups and not self.stopped():
            for group in list(groups):
                split = yield from self._step(group)
                if split is not None:
                    i = groups.index(group)
                    groups[i : i + 1] = split
                elif not group.windows:
                    groups.remove(group)
                if self.stopped():
                    return

    def _fill(self, windows: list[int], want: int) -> Iterator[None]:
        while any(len(self._buffers[w]) < want and self._left[w] > 0 for w in windows):
            region, pixels = next(self.stream)
            self._left[region.window] -= 1
            if isinstance(pixels, BaseException):
                self.failed(region, pixels)
                yield
            else:
                self._buffers[region.window].append((region, pixels))

    def _step(self, group: _Group) -> Generator[None, None, list[_Group] | None]:
        """One step of ``group``; returns the halves when an out-of-memory error split it, else None."""
        want = 1 if self.first_step else self.chunk()
        yield from self._fill(group.windows, want)
        ended = [w for w in group.windows if not self._buffers[w] and self._left[w] == 0]
        if ended:
            self._leave(group, ended)
        if not group.windows:
            return None
        k = min([want] + [len(self._buffers[w]) for w in group.windows])
        items = [self._buffers[w][i] for w in group.windows for i in range(k)]
        try:
            memory, job = self.forward(items, group.memory, len(group.windows))
        except RuntimeError as err:
            if not self.is_oom(err) or not self.shrink(k, len(group.windows)):
                raise
            if k == 1:  # one region per window already: step halves of the group one after the other
                half = len(group.windows) // 2
                rows = list(range(len(group.windows)))
                mem = group.memory
                return [_Group(group.windows[:half], None if mem is None else self.select(mem, rows[:half])),
                        _Group(group.windows[half:], None if mem is None else self.select(mem, rows[half:]))]
            return None
        for w in group.windows:
            for _ in range(k):
                self._buffers[w].popleft()
        group.memory = memory
        self.first_step = False
        if self.stopped():
            return None
        self.submit(job)
        yield
        return None

    def _leave(self, group: _Group, ended: list[int]) -> None:
        """Windows with nothing left: their scores (from their memory rows), then the rest keep their rows."""
        rows = {w: i for i, w in enumerate(group.windows)}
        for w in ended:
            row = None if group.memory is None else self.select(group.memory, [rows[w]])
            self.finish(self.cohort.regions[w][-1], row)
        keep = [w for w in group.windows if w not in ended]
        if group.memory is not None and keep:
            group.memory = self.select(group.memory, [rows[w] for w in keep])
        group.windows = keep
