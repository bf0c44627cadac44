"""The dock freezes the long-lived heap once (full collections then skip torch, napari and Qt), and garbage made
afterwards is still collected (widget/_heap.py)."""

from __future__ import annotations

import gc
import weakref

from dockhelpers import make_dock


class _Node:
    other: object = None


def test_long_lived_objects_are_frozen_once_and_new_cycles_still_collected(make_napari_viewer, qtbot):
    make_dock(make_napari_viewer, qtbot)
    frozen = gc.get_freeze_count()
    assert frozen > 100_000  # torch, timm, napari and Qt objects: what a full collection no longer walks
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # garbage only through a cycle: needs the collector
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
    make_dock(make_napari_viewer, qtbot)  # a second dock in the same process does not freeze again
    assert gc.get_freeze_count() <= frozen  # (frozen objects freed by reference counting leave the count)
