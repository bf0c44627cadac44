"""Keep Python's full garbage collections short in the napari process once the dock has loaded its catalogue.

Why: by then the process holds millions of long-lived objects (napari, Qt wrappers, torch, timm) that a full
(generation 2) collection walks every time; one such collection took ~370 ms. Allocation-heavy moments trigger
them, above all napari building the run's Labels layer at the click on Run, and since a collection holds the GIL it
stalls the event loop whichever thread starts it (measured in ``benchmarks/bench_widget.py``: the stall at Run
went from ~650 to ~260 ms with the heap frozen). ``gc.freeze()`` moves every object alive at that moment into a
permanent generation that collections skip; objects made later (layers, stores, runs) are collected as before.

The price: an object alive at that moment that later becomes garbage *only through a reference cycle* stays in
memory until the process ends (objects freed by reference counting are freed as usual). At that moment the process
holds modules, classes and the viewer itself, plus whatever layers were opened before the dock; freezing happens
once per process.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_long_lived"]

_done = False


def freeze_long_lived() -> bool:
    """Freeze the objects alive now (once per process); True the first time."""
    global _done
    if _done:
        return False
    gc.freeze()
    _done = True
    return True
