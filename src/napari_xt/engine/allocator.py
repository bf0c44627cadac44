"""Keep the memory torch frees inside the process while a CPU run works (glibc only; elsewhere a no-op).

Why: glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and gives it back
with ``munmap`` on free. A region encoder's activations are such buffers, allocated and freed again for every
batch, so the kernel zeroed the same gigabytes page by page on each forward: on the 2-core CPU Swin-V2-T spent as
much time in the kernel as in its own code (2.1 M page faults and 6 s of system time per 8 regions of 512 px,
~1 region/s). With mmap off and the heap never trimmed during the run, freed buffers are reused as they are
(0 page faults after the first batch; with the CPU sub-batch of ``XTModel`` about 2 regions/s; numbers and command
in docs/engine.md). The heap holds the run's peak until the run ends; then mmap is allowed again (above 32 MB, see
``_AFTER_MMAP_THRESHOLD``) and ``malloc_trim`` returns what is free to the system, so a napari session does not keep
a finished run's memory.

Nested and concurrent runs (the dock's run beside a Fine-tune preview) share one reference count: the after-run
settings come back when the last of them ends.
"""

from __future__ import annotations

import ctypes
import platform
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["reuse_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
# What is restored when the last run ends. Any mallopt call switches off glibc's dynamic thresholds for good (they
# start at 128 kB and rise to the size of the largest mapped buffer freed, up to 32 MB, with trimming at twice
# that), and left at 128 kB every decoded region and chunk buffer of the next run would be a fresh mmap: the state
# restored is the one the dynamic rule reaches in a process that has freed large buffers.
_AFTER_MMAP_THRESHOLD = 32 * 2**20
_AFTER_TRIM_THRESHOLD = 2 * _AFTER_MMAP_THRESHOLD
_DEFAULT_MMAP_MAX = 65536
_KEEP_ALL = 2**31 - 1  # mallopt takes an int: ~2 GB of free heap top kept, i.e. never trimmed during a run

_lock = threading.Lock()
_users = 0


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None  # musl, macOS, Windows: their allocators have no such knobs (or no such problem)
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def active() -> bool:
    """True while at least one run holds freed memory in the process (tests, diagnostics)."""
    return _users > 0


@contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """For the ``with`` block, freed large buffers stay in the process heap for the next batch to reuse.

    Yields whether the policy is in force (False off glibc or when ``enabled`` is False, e.g. a GPU run whose
    activations live in the CUDA caching allocator anyway).
    """
    global _users
    if _LIBC is None or not enabled:
        yield False
        return
    with _lock:
        if _users == 0:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, _KEEP_ALL)
        _users += 1
    try:
        yield True
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _LIBC.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                _LIBC.mallopt(_M_MMAP_THRESHOLD, _AFTER_MMAP_THRESHOLD)
                _LIBC.mallopt(_M_TRIM_THRESHOLD, _AFTER_TRIM_THRESHOLD)
                _LIBC.malloc_trim(0)
