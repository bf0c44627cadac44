"""Which regions to run, in what order, at which resolution: the plan both the CLI and the widget build.

A plan is plain data (no torch, no Qt): the analysis level and scale, the region grid with each region's *core* (the
pixels it owns, so overlapping regions never fight over a pixel and results do not depend on completion order), the
regions skipped by the foreground mask or the ROI, and the context windows (each a stream of region ids in order).
Its checksum guards a resumed run against continuing a different plan.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PlanError
from ..tiling import owned_spans, tile_starts
from .mask import foreground_mask, polygon_mask
from .options import Box, Roi

if TYPE_CHECKING:
    from ..io import LargeImage
    from ..model.config import XTConfig

__all__ = ["Box", "Plan", "PlanError", "Region", "choose_level", "make_plan", "model_pixel_unit", "place_in_windows",
           "region_grid"]

#: a region may be magnified at most this much (analysis px per level px): beyond it the model sees invented detail
MAX_UPSAMPLE = 16.0
#: nor may one region read more than this many level px a side (a 16k x 16k float RGB read is already 3 GiB)
MAX_READ_SIDE = 16384
_DOMAIN = {"um": "microscopy", "m": "remote sensing"}


@dataclass(frozen=True)
class Region:
    id: int
    row: int
    col: int
    box: Box  # analysis-level px; may reach past the image (padded when read)
    core: Box  # analysis-level px owned by this region, clipped to the image
    window: int = -1
    window_pos: tuple[int, int] = (0, 0)  # (row, col) of this region inside its window


@dataclass(frozen=True)
class Plan:
    """The work, frozen: regions indexed by region id, windows indexed by window id.

    A run never changes its plan: it keeps its own queue of window ids (:meth:`order_near` gives a new order when the
    view moves), so the plan always describes the whole work, and training, resume and the store's window scores look
    windows up by id.
    """

    image_shape: tuple[int, int]  # level-0 (y, x)
    level: int  # pyramid level read
    level_downsample: float  # level-0 px per level px
    scale: float  # level px per analysis px (1.0: read as is; != 1: resample regions)
    analysis_shape: tuple[int, int]
    region_size: int
    overlap: int
    context: str  # "global" | "window"
    window_size: int  # regions per window side (window mode)
    order: str  # "row-major" | "serpentine" | "nearest"
    regions: tuple[Region, ...]  # regions[i].id == i
    windows: tuple[tuple[int, ...], ...]  # windows[w]: region ids of window w, in stream order
    skipped: tuple[int, ...] = ()
    run_order: tuple[int, ...] = ()  # window ids in the order a run starts with (focus / nearest applied)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return (max(r.row for r in self.regions) + 1, max(r.col for r in self.regions) + 1)

    @property
    def n_planned(self) -> int:
        return sum(len(w) for w in self.windows)

    @property
    def downsample_to_level0(self) -> float:
        """Level-0 px per analysis px."""
        return self.level_downsample * self.scale

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["regions"] = [asdict(r) for r in self.regions]
        return d

    def checksum(self) -> str:
        """Identity of the work: what regions, where, in which windows (not the run order, which may change)."""
        key = {
            "level": self.level,
            "scale": round(self.scale, 6),
            "shape": self.analysis_shape,
            "region_size": self.region_size,
            "overlap": self.overlap,
            "context": self.context,
            "window_size": self.window_size,
            "regions": [(r.id, r.box, r.core) for r in self.regions],
            "windows": sorted(sorted(w) for w in self.windows),
        }
        h = hashlib.sha256()
        for piece in _json_pieces(key):
            h.update(piece.encode())
        return h.hexdigest()[:16]

    def order_near(self, point: tuple[float, float], window_ids: Sequence[int] | None = None) -> list[int]:
        """``window_ids`` (default: all) sorted so those nearest ``point`` (level-0 (y, x)) come first.

        Window mode only; in global mode (one window) the order is returned unchanged.
        """
        ids = list(self.run_order if window_ids is None else window_ids)
        if self.context != "window":
            return ids
        f = self.downsample_to_level0

        def distance(w: int) -> float:
            boxes = np.array([self.regions[i].core for i in self.windows[w]], dtype=float)
            cy = (boxes[:, 0].min() + boxes[:, 2].max()) / 2 * f
            cx = (boxes[:, 1].min() + boxes[:, 3].max()) / 2 * f
            return math.hypot(cy - point[0], cx - point[1])

        return sorted(ids, key=distance)

    def windows_by_id(self) -> list[list[int]]:
        """The windows as lists (JSON), indexed by window id."""
        return [list(w) for w in self.windows]


#: Items of a long list dumped to JSON per call in :func:`_json_pieces` (a few ms each).
JSON_CHUNK = 2000


def _json_pieces(key: dict[str, Any]) -> Iterator[str]:
    """``json.dumps(key, sort_keys=True)`` in pieces, long lists a chunk at a time: the same text, so the same digest.

    One C-level dump of a 150k-region plan held the GIL for ~140 ms, and the viewer whose worker was preparing the
    run froze that long (issue 25); between pieces other threads run.
    """
    yield "{"
    for i, name in enumerate(sorted(key)):
        yield (", " if i else "") + json.dumps(name) + ": "
        value = key[name]
        if isinstance(value, list) and len(value) > JSON_CHUNK:
            yield "["
            for start in range(0, len(value), JSON_CHUNK):
                yield (", " if start else "") + json.dumps(value[start:start + JSON_CHUNK], sort_keys=True)[1:-1]
            yield "]"
        else:
            yield json.dumps(value, sort_keys=True)
    yield "}"


def choose_level(downsamples: list[float], base_pixel_size: float | None, target_pixel_size: float | None,
                 level: int | None) -> tuple[int, float]:
    """Pick the pyramid level to read and the resampling factor (level px per analysis px).

    Prefers the coarsest level that is still at least as fine as the target, then resamples the rest of the way,
    so no detail the model expects is lost.
    """
    if level is not None:
        if not 0 <= level < len(downsamples):
            raise PlanError(f"level {level} is out of range: the image has levels 0..{len(downsamples) - 1}",
                            option="level")
        return level, 1.0
    if target_pixel_size is None:
        return 0, 1.0
    if base_pixel_size is None:
        raise PlanError("the image has no pixel size, so an analysis pixel size cannot be honoured; choose a "
                        "pyramid level instead", option="mpp")
    wanted = target_pixel_size / base_pixel_size  # level-0 px per analysis px
    candidates = [i for i, ds in enumerate(downsamples) if ds <= wanted * 1.02]
    lvl = max(candidates, key=lambda i: downsamples[i]) if candidates else 0
    scale = wanted / downsamples[lvl]
    if abs(scale - 1.0) < 0.02:
        scale = 1.0
    return lvl, scale


def model_pixel_unit(config: XTConfig) -> str:
    """The unit of a model config's ``pixel_size``: its ``pixel_unit``, else (checkpoints from before it was
    recorded) metres for SAR models and micrometres for the rest."""
    unit = getattr(config, "pixel_unit", None)
    return unit or ("m" if getattr(config, "input_kind", "") == "sar" else "um")


def base_pixel_size(image: LargeImage, target_unit: str | None = None) -> float | None:
    """Level-0 pixel size of ``image`` in ``target_unit`` (the model's), for matching it with the model's.

    Units are never mixed: degrees become metres at the scene centre (geodesic, pyproj), the geometric mean of
    the two axes (a degree of longitude is shorter than one of latitude); a microscopy model on metre pixels (or
    the reverse) is a :class:`PlanError` naming both, answered by an explicit ``level``.
    """
    pixel = getattr(image, "pixel_size", None)
    if not pixel:
        return None
    if getattr(image, "pixel_unit", None) == "deg":
        from ..io import metric_pixel_size

        found = metric_pixel_size(image)
        assert found is not None
        (sy, sx), unit = found
        size = math.sqrt(sy * sx)
    else:
        size, unit = float(pixel[1]), str(getattr(image, "pixel_unit", None) or "um")
    if target_unit is not None and unit != target_unit:
        shown = "µm" if unit == "um" else unit
        want = "µm" if target_unit == "um" else target_unit
        raise PlanError(f"the model is made for pixels measured in {want} ({_DOMAIN.get(target_unit, target_unit)}) "
                        f"but this image's pixels are {size:.4g} {shown} ({_DOMAIN.get(unit, unit)}); matching them "
                        "would resample by a factor of a million: pick a model for this kind of image, or choose a "
                        "pyramid level to run it as is", option="level")
    return size


def make_plan(image: LargeImage, region_size: int = 1024, overlap: int = 0, target_pixel_size: float | None = None,
              level: int | None = None, context: str = "window", window_size: int = 4, order: str = "row-major",
              use_mask: bool = True, roi: Roi | Box | list[tuple[float, float]] | None = None,
              focus: tuple[float, float] | None = None, min_foreground: float = 0.01,
              target_unit: str | None = None) -> Plan:
    """Build a plan for ``image`` (a :class:`napari_xt.io.LargeImage` or anything with ``levels``/``downsamples``).

    ``roi`` is a rectangle (y0, x0, y1, x1) or a polygon [(y, x), ...] in level-0 px; ``focus`` is a level-0 (y, x)
    point whose nearest windows run first. ``target_unit`` (``um`` | ``m``) is the unit of ``target_pixel_size``
    (the model's); None means the image's own (metres for an image in degrees).
    """
    if region_size <= 0 or not 0 <= overlap < region_size:
        raise PlanError(f"overlap must be in [0, region size); got overlap {overlap}, region size {region_size}",
                        option="overlap")
    if context not in ("global", "window"):
        raise PlanError(f"context must be 'global' or 'window', not {context!r}", option="context")
    if order not in ("row-major", "serpentine", "nearest"):
        raise PlanError(f"order must be row-major, serpentine or nearest, not {order!r}", option="order")
    downsamples = [float(d) for d in image.downsamples]
    base = base_pixel_size(image, target_unit) if (target_pixel_size is not None and level is None) else None
    lvl, scale = choose_level(downsamples, base, target_pixel_size, level)
    _check_resample(image, lvl, scale, region_size, base, target_pixel_size, target_unit)
    lh, lw = image.levels[lvl].shape[:2]
    ah, aw = max(1, round(lh / scale)), max(1, round(lw / scale))
    regions = region_grid((ah, aw), region_size, overlap)
    keep = np.ones(len(regions), dtype=bool)
    f = downsamples[lvl] * scale  # level-0 px per analysis px
    if use_mask:
        mask, mask_ds = foreground_mask(image)  # bool (y, x) on a low level; mask_ds = level-0 px per mask px
        keep &= _coverage(regions, mask, f / mask_ds) >= min_foreground
    if roi is not None:
        keep &= _roi_coverage(regions, roi, image.levels[0].shape[:2], f) > 0
    kept = [r for r, k in zip(regions, keep, strict=True) if k]
    skipped = [r.id for r, k in zip(regions, keep, strict=True) if not k]
    windows = _make_windows(kept, context, window_size, order)
    regions = place_in_windows(regions, windows, context, window_size)
    plan = Plan(tuple(image.levels[0].shape[:2]), lvl, downsamples[lvl], scale, (ah, aw), region_size, overlap,
                context, window_size, order, tuple(regions), tuple(tuple(w) for w in windows), tuple(skipped),
                tuple(range(len(windows))))
    if focus is not None or order == "nearest":
        centre = focus if focus is not None else (plan.image_shape[0] / 2, plan.image_shape[1] / 2)
        plan = replace(plan, run_order=tuple(plan.order_near(centre)))
    return plan


def region_grid(analysis_shape: tuple[int, int], region_size: int, overlap: int) -> list[Region]:
    """Every region of the analysis image, row-major (ids 0..n-1), not yet in a window.

    The one tiling rule (shared with whole-image ``XTModel.forward``; the last region is flush with the edge), used
    by :func:`make_plan` and by a store's plan rebuilt from its metadata (``engine/store_plan.py``) alike."""
    ah, aw = analysis_shape
    stride = region_size - overlap
    ys, xs = tile_starts(ah, region_size, stride), tile_starts(aw, region_size, stride)
    ycores, xcores = owned_spans(ys, region_size, ah), owned_spans(xs, region_size, aw)
    regions: list[Region] = []
    for r, (y0, (cy0, cy1)) in enumerate(zip(ys, ycores, strict=True)):
        for c, (x0, (cx0, cx1)) in enumerate(zip(xs, xcores, strict=True)):
            regions.append(Region(len(regions), r, c, (y0, x0, y0 + region_size, x0 + region_size),
                                  (cy0, cx0, cy1, cx1)))
    return regions


def place_in_windows(regions: Sequence[Region], windows: Sequence[Sequence[int]], context: str,
                     window_size: int) -> list[Region]:
    """``regions`` with their window id (-1: in none, skipped) and their (row, col) inside it."""
    window_of = {i: w for w, ids in enumerate(windows) for i in ids}
    return [Region(r.id, r.row, r.col, r.box, r.core, window_of.get(r.id, -1),
                   (r.row % window_size, r.col % window_size) if context == "window" else (r.row, r.col))
            for r in regions]


def _check_resample(image, lvl: int, scale: float, region_size: int, base: float | None, target: float | None,
                    unit: str | None) -> None:
    """Refuse, before any run, a plan whose regions would be magnified or read beyond sane bounds."""
    if scale == 1.0:
        return
    side = region_size * scale  # level px read per region side
    shown = {"um": "µm", None: str(getattr(image, "pixel_unit", "") or "")}.get(unit, unit)
    facts = (f"analysing at {target:.4g} {shown}/px an image of {base:.4g} {shown}/px" if base and target
             else "the analysis pixel size asked for")
    if 1 / scale > MAX_UPSAMPLE:
        raise PlanError(f"{facts}: every pixel would be magnified {1 / scale:.3g} times (at most {MAX_UPSAMPLE:g}); "
                        "pick a model made for this resolution, or a pyramid level to run it as is", option="mpp")
    if side > MAX_READ_SIDE:
        lh, lw = image.levels[lvl].shape[:2]
        raise PlanError(f"{facts}: each {region_size} px region would cover {side:.3g} px of the image (which is "
                        f"{lw} x {lh} px at level {lvl}; at most {MAX_READ_SIDE} px are read per region); pick a "
                        "model made for this resolution, or a pyramid level to run it as is", option="mpp")


def _make_windows(regions: list[Region], context: str, window_size: int, order: str) -> list[list[int]]:
    if not regions:
        return []
    if context == "global":
        rows = sorted({r.row for r in regions})
        ordered: list[Region] = []
        for i, row in enumerate(rows):
            line = sorted((r for r in regions if r.row == row), key=lambda r: r.col)
            ordered += reversed(line) if (order == "serpentine" and i % 2) else line
        return [[r.id for r in ordered]]
    groups: dict[tuple[int, int], list[Region]] = {}
    for r in regions:
        groups.setdefault((r.row // window_size, r.col // window_size), []).append(r)
    return [[r.id for r in sorted(groups[k], key=lambda r: (r.row, r.col))] for k in sorted(groups)]


def _coverage(regions: Sequence[Region], mask: np.ndarray, ratio: float) -> np.ndarray:
    """Fraction of each region's core that the low-resolution mask marks as foreground.

    Vectorised over the regions (a 100,000 px slide plans ~40k of them: 0.8 s of Python per call before)."""
    if not regions:
        return np.zeros(0)
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = mask.shape
    cores = np.array([r.core for r in regions], dtype=np.float64) * ratio
    y0, x0, y1, x1 = (np.trunc(cores[:, k]).astype(np.int64) for k in range(4))  # int(), as cores are >= 0
    y1, x1 = np.minimum(np.maximum(y1, y0 + 1), h), np.minimum(np.maximum(x1, x0 + 1), w)
    y0, x0 = np.minimum(y0, h - 1), np.minimum(x0, w - 1)
    area = np.maximum((y1 - y0) * (x1 - x0), 1)
    return (integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]) / area


def _roi_coverage(regions, roi, shape0, f) -> np.ndarray:
    """Whether each region's core meets the ROI (rectangle or polygon, level-0 px), on a coarse raster."""
    pts = np.asarray(roi, dtype=float)
    if pts.ndim == 1:
        if pts.shape != (4,):
            raise PlanError("a rectangular ROI is (y0, x0, y1, x1) in level-0 pixels", option="roi")
        y0, x0, y1, x1 = pts
        if y1 <= y0 or x1 <= x0:
            raise PlanError(f"empty ROI rectangle {tuple(pts)}", option="roi")
        pts = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise PlanError("a polygon ROI needs at least 3 (y, x) vertices in level-0 pixels", option="roi")
    cell = max(shape0) / 1024.0  # raster the ROI at ~1024 px on the long side
    grid_shape = (int(math.ceil(shape0[0] / cell)), int(math.ceil(shape0[1] / cell)))
    raster = polygon_mask(pts / cell, grid_shape)
    if not raster.any():
        raise PlanError("the ROI does not overlap the image", option="roi")
    return _coverage(regions, raster, f / cell)
