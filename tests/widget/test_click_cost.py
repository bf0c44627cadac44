"""What the click on Run costs the main thread (issue 25): the first Labels layer of a process used to build vispy's
dash-pattern table there (100-140 ms); the dock's catalogue worker now builds it before any Run."""

from __future__ import annotations

import threading

import numpy as np
from dockhelpers import make_dock
from vispy.visuals.line import dash_atlas


def test_vispy_dash_patterns_are_built_by_the_catalogue_worker_not_at_the_first_layer(make_napari_viewer, qtbot,
                                                                                       monkeypatch):
    cached = dash_atlas._make_pattern  # vispy's lru_cache
    cached.cache_clear()  # as in a fresh process (earlier tests made line visuals)
    built_in: list[threading.Thread] = []

    def recording(*args):
        before = cached.cache_info().misses
        try:
            return cached(*args)
        finally:
            if cached.cache_info().misses > before:
                built_in.append(threading.current_thread())

    monkeypatch.setattr(dash_atlas, "_make_pattern", recording)
    viewer, _dock = make_dock(make_napari_viewer, qtbot)
    assert len(built_in) >= 13 and threading.main_thread() not in built_in  # every pattern, in the worker
    built_in.clear()
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="like the run's layer")  # what Run's click does
    assert built_in == []  # its polygon overlay's line visual found every pattern built
