"""The region plan a store was made with, rebuilt from its metadata (for views of a store without a run).

A store records its plan's fields and windows (region ids per window) but not every region's box, which the tiling
rule derives from the analysis shape, region size and overlap. Rebuilding the frozen :class:`~.plan.Plan` lets a
store opened in napari show what a live run shows (the classification heat map needs each window's cores). The
result is checked against the store's ``plan_checksum``: a plan that does not rebuild exactly (a store from a
release with another tiling rule) is refused (None), never drawn in the wrong place.

Torch-free (the grid is :func:`~.plan.region_grid`, the one :func:`~.plan.make_plan` uses), so the napari
reader can call it on the main thread.
"""

from __future__ import annotations

import logging
from typing import Any

from .plan import Plan, place_in_windows, region_grid

log = logging.getLogger(__name__)

__all__ = ["plan_from_meta"]


def plan_from_meta(meta: dict[str, Any]) -> Plan | None:
    """The plan recorded in a store's metadata, or None when it is missing or does not rebuild to its checksum."""
    d = meta.get("plan") or {}
    try:
        ah, aw = (int(v) for v in d["analysis_shape"])
        size, overlap = int(d["region_size"]), int(d["overlap"])
        context, window_size = str(d["context"]), int(d["window_size"])
        windows = tuple(tuple(int(i) for i in w) for w in d["windows"])
        regions = place_in_windows(region_grid((ah, aw), size, overlap), windows, context, window_size)
        plan = Plan((int(d["image_shape"][0]), int(d["image_shape"][1])), int(d["level"]),
                    float(d["level_downsample"]), float(d["scale"]), (ah, aw), size, overlap, context, window_size,
                    str(d.get("order", "row-major")), tuple(regions), windows,
                    tuple(int(i) for i in d.get("skipped") or ()), tuple(range(len(windows))))
    except (KeyError, TypeError, ValueError) as err:
        log.debug("the store's plan cannot be rebuilt: %s", err)
        return None
    want = meta.get("plan_checksum")
    if want and plan.checksum() != want:
        log.warning("the store's region plan does not rebuild to its checksum (%s, not %s); its windows are not "
                    "shown", plan.checksum(), want)
        return None
    return plan
