"""One CPU core left to the viewer while torch works in the dock: for a run and for the encoder time estimate alike.

With every core in torch's intra-op pool, the viewer's main thread waits for a core (and torch's threads wait for
each other): on a 2-core machine with other load, a dock run's longest event-loop gaps halved with one thread fewer
(docs/widget.md). The time estimate must time the encoder the way the run will use it: on a loaded 2-core machine
the same tiny-encoder batch took 860 ms with torch's 2 threads (OpenMP threads spinning for a core that other
processes hold) and 1 ms with 1 (issue 23's 80x jump of the estimate; measured with ``app/speed.py``).

torch's thread count is process-wide, so the setting is shared: the first user lowers it, the last one restores it
(an estimate still timing when Run is clicked must not hand the run back every core when it ends).

torch-free at import, like the rest of ``app/``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_lock = threading.Lock()
_users = 0
_restore: int | None = None


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def spare_a_core() -> Iterator[None]:
    """torch runs on one core fewer than it may (at least one) while any caller is inside."""
    global _users, _restore
    import torch

    with _lock:
        if _users == 0:
            before = torch.get_num_threads()
            wanted = max(1, min(before, cores() - 1))
            _restore = before if wanted != before else None
            if _restore is not None:
                torch.set_num_threads(wanted)
                log.debug("torch threads %d -> %d while the viewer runs", before, wanted)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _restore is not None:
                torch.set_num_threads(_restore)
                _restore = None


__all__ = ["cores", "spare_a_core"]
