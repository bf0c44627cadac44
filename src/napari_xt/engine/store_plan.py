"""The region plan a store was made with, rebuilt from its metadata (for views of a store without a run).

A store records its plan's fields and windows (region ids per window) but not every region's box, which the tiling
rule derives from the analysis shape, region size and overlap. Rebuilding the frozen :class:`~.plan.Plan` lets a
store opened in napari show what a live run shows (the classification heat map needs each window's cores). The
result is checked against the store's ``plan_checksum``: a plan that does not rebuild exactly (a store from a
release with another tiling rule) is refused (None), never drawn in the wrong place.

Torch-free (the tiling rule is :mod:`napari_xt.tiling`), so the napari reader can call it on the main thread.
"""

from __future__ import annotations

import logging
from typing import Any

from ..tiling import owned_spans, tile_starts
from .plan import Plan, Region

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
        ys, xs = tile_starts(ah, size, size - overlap), tile_starts(aw, size, size - overlap)
        ycores, xcores = owned_spans(ys, size, ah), owned_spans(xs, size, aw)
        window_of = {i: w for w, ids in enumerate(windows) for i in ids}
        regions: list[Region] = []
        for r, (y0, (cy0, cy1)) in enumerate(zip(ys, ycores, strict=True)):
            for c, (x0, (cx0, cx1)) in enumerate(zip(xs, xcores, strict=True)):
                i = len(regions)
                pos = (r % window_size, c % window_size) if context == "window" else (r, c)
                regions.append(Region(i, r, c, (y0, x0, y0 + size, x0 + size), (cy0, cx0, cy1, cx1),
                                      window_of.get(i, -1), pos))
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
