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
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["VIEWER_NICE", "call_at_lower_priority", "lower_this_thread"]

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


def call_at_lower_priority(fn: Callable[..., T], *args: Any, by: int = VIEWER_NICE, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a new thread ``by`` nicer than the caller, waiting for it; its result or error.

    For a viewer's short preparation steps (opening the image, building or loading the model, planning) that run on
    a pooled worker thread: lowering the pooled thread itself would leave it lowered for whatever the pool runs next,
    so the work gets a thread of its own (and torch's OpenMP team made from it inherits the priority). Building a
    random-weight Swin-V2-T's tensors there took the main thread's event loop to 60-73 ms gaps at the same priority
    (2 cores; issue 25).
    """
    outcome: dict[str, Any] = {}

    def work() -> None:
        lower_this_thread(by)
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as err:  # handed to the caller's thread, raised there
            outcome["error"] = err

    thread = threading.Thread(target=work, name=f"napari-xt-{getattr(fn, '__name__', 'work')}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
