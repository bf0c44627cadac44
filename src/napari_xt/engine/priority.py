"""Run a thread (and the threads it starts later) at a lower CPU priority, so a viewer's event loop gets a core.

Why: with the dock's run on a 2-core machine the model's two torch threads, the reader, post-processing and writer
threads all want the CPU the main thread draws with; the viewer's redraw then waited its turn and the event loop
stalled for 60-70 ms while regions streamed in (an idle viewer's worst gap is ~30 ms). At nice +10 the scheduler
gives the main thread the core whenever it wants one and the run the rest, which costs the run almost nothing: the
main thread is idle most of the time.

Linux only: there a thread's nice value is its own (``setpriority`` on its thread id) and threads it creates
afterwards inherit it, torch's OpenMP team for that thread included. Elsewhere this is a no-op. Raising the value
needs no privileges; it is never lowered again, which is why it goes on the run's own short-lived threads only.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["VIEWER_NICE", "lower_this_thread"]

log = logging.getLogger(__name__)

#: How much nicer than the viewer a run started from napari is (CFS weights: 1024 vs 110 per thread at +10).
VIEWER_NICE = 10


def lower_this_thread(by: int) -> bool:
    """Raise the calling thread's nice value by ``by``; True when it took effect."""
    if by <= 0 or not sys.platform.startswith("linux"):
        return False
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
        return True
    except OSError:  # a sandbox that forbids it: the run goes on at the same priority
        log.debug("could not lower the priority of thread %s", tid, exc_info=True)
        return False
