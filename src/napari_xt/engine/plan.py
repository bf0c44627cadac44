"""Which regions to run, in what order, at which resolution: the plan both the CLI and the widget build.

A plan is plain data (no torch, no Qt): the analysis level and scale, the region grid with each region's *core* (the
pixels it owns, so overlapping regions never fight over a pixel and results do not depend on completion order), the
regions skipped by the foreground mask or the ROI, and the context windows (each a stream of region ids in order).
Its checksum guards ``--resume`` against continuing a different plan.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .mask import foreground_mask, polygon_mask

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1)


class PlanError(ValueError):
    """The requested plan cannot be made (bad ROI, level out of range, ...); the message says why."""


@dataclass(frozen=True)
class Region:
    id: int
    row: int
    col: int
    box: Box  # analysis-level px; may reach past the image (padded when read)
    core: Box  # analysis-level px owned by this region, clipped to the image
    window: int = -1
    window_pos: tuple[int, int] = (0, 0)  # (row, col) of this region inside its window


@dataclass
class Plan:
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
    regions: list[Region]
    windows: list[list[int]]  # region ids per window, in stream order; windows in run order
    skipped: list[int] = field(default_factory=list)

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

    def to_dict(self) -> dict:
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
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def prioritise(self, point: tuple[float, float]) -> None:
        """Reorder windows so those nearest ``point`` (level-0 (y, x)) run first (window mode).

        Only the run order changes: each region keeps its window id (``Region.window``, fixed by ``make_plan``), so
        window scores in the store mean the same window however often the view moved.
        """
        if self.context != "window" or not self.windows:
            return
        by_id = {r.id: r for r in self.regions}
        f = self.downsample_to_level0

        def distance(window: list[int]) -> float:
            boxes = np.array([by_id[i].core for i in window], dtype=float)
            cy = (boxes[:, 0].min() + boxes[:, 2].max()) / 2 * f
            cx = (boxes[:, 1].min() + boxes[:, 3].max()) / 2 * f
            return math.hypot(cy - point[0], cx - point[1])

        self.windows.sort(key=distance)

    def windows_by_id(self) -> list[list[int]]:
        """The windows indexed by their id (``Region.window``), whatever the run order."""
        by_id = {r.id: r for r in self.regions}
        return sorted(self.windows, key=lambda ids: by_id[ids[0]].window)


def choose_level(downsamples: list[float], base_pixel_size: float | None, target_pixel_size: float | None,
                 level: int | None) -> tuple[int, float]:
    """Pick the pyramid level to read and the resampling factor (level px per analysis px).

    Prefers the coarsest level that is still at least as fine as the target, then resamples the rest of the way,
    so no detail the model expects is lost.
    """
    if level is not None:
        if not 0 <= level < len(downsamples):
            raise PlanError(f"--level {level} is out of range: the image has levels 0..{len(downsamples) - 1}")
        return level, 1.0
    if target_pixel_size is None:
        return 0, 1.0
    if base_pixel_size is None:
        raise PlanError("the image has no pixel size; give --level instead of --mpp")
    wanted = target_pixel_size / base_pixel_size  # level-0 px per analysis px
    candidates = [i for i, ds in enumerate(downsamples) if ds <= wanted * 1.02]
    lvl = max(candidates, key=lambda i: downsamples[i]) if candidates else 0
    scale = wanted / downsamples[lvl]
    if abs(scale - 1.0) < 0.02:
        scale = 1.0
    return lvl, scale


def _axis_starts(length: int, size: int, stride: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, stride)) + [length - size]
    return sorted(set(starts))


def _cores(starts: list[int], size: int, length: int) -> list[tuple[int, int]]:
    """Split [0, length) among regions at ``starts``: each owns up to the midpoint of its overlap with the next."""
    out = []
    for i, s in enumerate(starts):
        lo = 0 if i == 0 else (s + starts[i - 1] + size) // 2
        hi = length if i == len(starts) - 1 else (starts[i + 1] + s + size) // 2
        out.append((max(lo, 0), min(hi, length)))
    return out


def make_plan(image, region_size: int = 1024, overlap: int = 0, target_pixel_size: float | None = None,
              level: int | None = None, context: str = "window", window_size: int = 4, order: str = "row-major",
              use_mask: bool = True, roi: Box | list[tuple[float, float]] | None = None,
              focus: tuple[float, float] | None = None, min_foreground: float = 0.01) -> Plan:
    """Build a plan for ``image`` (a :class:`napari_xt.io.LargeImage` or anything with ``levels``/``downsamples``).

    ``roi`` is a rectangle (y0, x0, y1, x1) or a polygon [(y, x), ...] in level-0 px; ``focus`` is a level-0 (y, x)
    point whose nearest windows run first.
    """
    if region_size <= 0 or not 0 <= overlap < region_size:
        raise PlanError(f"overlap must be in [0, region size); got overlap {overlap}, region size {region_size}")
    if context not in ("global", "window"):
        raise PlanError(f"context must be 'global' or 'window', not {context!r}")
    if order not in ("row-major", "serpentine", "nearest"):
        raise PlanError(f"order must be row-major, serpentine or nearest, not {order!r}")
    downsamples = [float(d) for d in image.downsamples]
    base = image.pixel_size[1] if getattr(image, "pixel_size", None) else None
    lvl, scale = choose_level(downsamples, base, target_pixel_size, level)
    lh, lw = image.levels[lvl].shape[:2]
    ah, aw = max(1, round(lh / scale)), max(1, round(lw / scale))
    stride = region_size - overlap
    ys, xs = _axis_starts(ah, region_size, stride), _axis_starts(aw, region_size, stride)
    ycores, xcores = _cores(ys, region_size, ah), _cores(xs, region_size, aw)

    regions = []
    for r, (y0, (cy0, cy1)) in enumerate(zip(ys, ycores, strict=True)):
        for c, (x0, (cx0, cx1)) in enumerate(zip(xs, xcores, strict=True)):
            regions.append(Region(len(regions), r, c, (y0, x0, y0 + region_size, x0 + region_size),
                                  (cy0, cx0, cy1, cx1)))

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
    by_id = {}
    for w, ids in enumerate(windows):
        for i in ids:
            by_id[i] = w
    regions = [
        Region(r.id, r.row, r.col, r.box, r.core, by_id.get(r.id, -1),
               (r.row % window_size, r.col % window_size) if context == "window" else (r.row, r.col))
        for r in regions
    ]
    plan = Plan(tuple(image.levels[0].shape[:2]), lvl, downsamples[lvl], scale, (ah, aw), region_size, overlap,
                context, window_size, order, regions, windows, skipped)
    if focus is not None or order == "nearest":
        plan.prioritise(focus if focus is not None else (plan.image_shape[0] / 2, plan.image_shape[1] / 2))
    return plan


def _make_windows(regions: list[Region], context: str, window_size: int, order: str) -> list[list[int]]:
    if not regions:
        return []
    if context == "global":
        rows = sorted({r.row for r in regions})
        ordered = []
        for i, row in enumerate(rows):
            line = sorted((r for r in regions if r.row == row), key=lambda r: r.col)
            ordered += reversed(line) if (order == "serpentine" and i % 2) else line
        return [[r.id for r in ordered]]
    groups: dict[tuple[int, int], list[Region]] = {}
    for r in regions:
        groups.setdefault((r.row // window_size, r.col // window_size), []).append(r)
    return [[r.id for r in sorted(groups[k], key=lambda r: (r.row, r.col))] for k in sorted(groups)]


def _coverage(regions: list[Region], mask: np.ndarray, ratio: float) -> np.ndarray:
    """Fraction of each region's core that the low-resolution mask marks as foreground."""
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    out = np.zeros(len(regions))
    h, w = mask.shape
    for i, r in enumerate(regions):
        y0, x0, y1, x1 = (int(v * ratio) for v in r.core)
        y1, x1 = min(max(y1, y0 + 1), h), min(max(x1, x0 + 1), w)
        y0, x0 = min(y0, h - 1), min(x0, w - 1)
        area = max((y1 - y0) * (x1 - x0), 1)
        out[i] = (integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]) / area
    return out


def _roi_coverage(regions, roi, shape0, f) -> np.ndarray:
    """Whether each region's core meets the ROI (rectangle or polygon, level-0 px), on a coarse raster."""
    pts = np.asarray(roi, dtype=float)
    if pts.ndim == 1:
        if pts.shape != (4,):
            raise PlanError("a rectangular ROI is (y0, x0, y1, x1) in level-0 pixels")
        y0, x0, y1, x1 = pts
        if y1 <= y0 or x1 <= x0:
            raise PlanError(f"empty ROI rectangle {tuple(pts)}")
        pts = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise PlanError("a polygon ROI needs at least 3 (y, x) vertices in level-0 pixels")
    cell = max(shape0) / 1024.0  # raster the ROI at ~1024 px on the long side
    grid_shape = (int(math.ceil(shape0[0] / cell)), int(math.ceil(shape0[1] / cell)))
    raster = polygon_mask(pts / cell, grid_shape)
    if not raster.any():
        raise PlanError("the ROI does not overlap the image")
    return _coverage(regions, raster, f / cell)
