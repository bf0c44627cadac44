"""An object cut by a region border is reported once: the store's readers see the better of the two half-objects."""

from __future__ import annotations

import numpy as np

from napari_xt.objects import POINT_RADIUS
from napari_xt.store.layout import found_once


def table(y, x, size, cls, score, region):
    n = len(y)
    return {"y": np.asarray(y, np.float32), "x": np.asarray(x, np.float32),
            "h": np.full(n, size, np.float32) if np.isscalar(size) else np.asarray(size, np.float32),
            "w": np.full(n, size, np.float32) if np.isscalar(size) else np.asarray(size, np.float32),
            "cls": np.asarray(cls, np.int32), "score": np.asarray(score, np.float32),
            "region_id": np.asarray(region, np.int32)}


def test_two_halves_of_one_object_across_a_border_become_the_better_one():
    # a 40 px crown cut by the border at x = 256: each region saw a half and put its centre in its own core
    det = found_once(table([100, 102], [250, 262], 40, [0, 0], [0.4, 0.7], [0, 1]))
    assert det["score"].tolist() == [np.float32(0.7)] and det["region_id"].tolist() == [1]


def test_distinct_objects_stay():
    far = found_once(table([100, 100], [230, 290], 40, [0, 0], [0.4, 0.7], [0, 1]))  # 60 px apart > 20
    assert len(far["y"]) == 2
    classes = found_once(table([100, 102], [250, 262], 40, [0, 1], [0.4, 0.7], [0, 1]))  # a tree and a car
    assert len(classes["y"]) == 2
    same_region = found_once(table([100, 102], [250, 262], 40, [0, 0], [0.4, 0.7], [3, 3]))  # the model's own call
    assert len(same_region["y"]) == 2


def test_points_without_sizes_use_a_small_radius_and_chains_resolve_best_first():
    close = found_once(table([0, 0], [0, POINT_RADIUS - 1], 0, [0, 0], [0.5, 0.6], [0, 1]))
    assert len(close["y"]) == 1
    apart = found_once(table([0, 0], [0, POINT_RADIUS + 1], 0, [0, 0], [0.5, 0.6], [0, 1]))
    assert len(apart["y"]) == 2
    # A-B and B-C overlap, A-C do not: the best (A) stays, B goes, so C (no longer overlapped by a survivor) stays
    chain = found_once(table([0, 0, 0], [0, 15, 30], 32, [0, 0, 0], [0.9, 0.8, 0.7], [0, 1, 2]))
    assert sorted(round(float(s), 2) for s in chain["score"]) == [0.7, 0.9]
