"""Training windows: which regions to learn from, and each region's pixels and targets, one region at a time.

Training sees images the way inference does — the engine's plan (analysis level, region grid, k x k context
windows, foreground mask) — so a model learns on exactly the geometry it will be run on. A window is yielded region
by region and never assembled whole: peak memory depends on the region size, not on the window or the image.

Geometric augmentation acts on the whole window: one of the 8 flips/rotations is applied to every region's pixels,
labels and objects *and* to the regions' positions in the window, so context (which region is left of which) stays
consistent with the pixels. Translation moves the whole window by up to half a region each time it is trained on, so
an object is seen at every place in a region, cut by every border, instead of at one fixed spot: on the NEON tree
tile's 16 training windows (a typical user's annotation) that is the difference between learning the windows and
learning trees.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..engine.mask import fill_cells, polygon_mask, region_fill
from ..engine.normalise import Normaliser
from ..engine.plan import Plan, make_plan
from ..engine.reader import read_region_pixels
from ..io import LargeImage
from .annotations import (
    AnnotationError,
    DetectionAnnotations,
    ImageClass,
    SegmentationLabels,
)
from .options import Augment as Augment  # the switches live with the other (torch-free) options; re-exported

IGNORE = -1  # segmentation target value that never enters the loss


@dataclass
class TrainingImage:
    """One large image and what was annotated on it (any combination of the three kinds)."""

    image: LargeImage
    segmentation: SegmentationLabels | None = None
    detection: DetectionAnnotations | None = None
    image_class: ImageClass | None = None
    name: str = ""


@dataclass(frozen=True)
class WindowRef:
    image: int  # index into the training images
    window: int  # window index in that image's plan


@dataclass
class RegionSample:
    """A region ready for the model: normalised pixels (C, R, R), its (row, col) in the window, and targets."""

    pixels: np.ndarray
    position: tuple[int, int]
    segmentation: np.ndarray | None = None  # (R, R) int64 class ids, IGNORE where unlabelled
    objects: dict | None = None  # region-local px: y, x, h, w (NaN: unknown), cls; 'valid' (R/4, R/4) bool
    region_id: int = -1
    image: int = 0  # index of the training image
    transform: tuple[int, bool] = (0, False)  # the window's rotation (k x 90 degrees) and flip, already applied


@dataclass
class WindowSet:
    """Plans for every training image and the windows worth training on."""

    images: list[TrainingImage]
    plans: list[Plan]
    windows: list[WindowRef]
    normalisers: list[Normaliser] = field(default_factory=list)

    def regions(self, ref: WindowRef):
        """The regions of window id ``ref.window`` (plans are frozen and index windows by id)."""
        plan = self.plans[ref.image]
        return [plan.regions[i] for i in plan.windows[ref.window]]

    def split(self, val_fraction: float, seed: int = 0) -> tuple[list[WindowRef], list[WindowRef]]:
        """Deterministic split by a hash of (image, window): the same window is always on the same side."""
        if val_fraction <= 0 or len(self.windows) < 2:
            return list(self.windows), []

        def score(ref: WindowRef) -> float:
            digest = hashlib.sha256(f"{seed}:{ref.image}:{ref.window}".encode()).digest()
            return int.from_bytes(digest[:8], "little") / 2**64

        ranked = sorted(self.windows, key=score)
        n_val = min(len(ranked) - 1, max(1, round(val_fraction * len(ranked))))
        val = set(ranked[:n_val])
        return [w for w in self.windows if w not in val], [w for w in self.windows if w in val]


def build_windows(images: list[TrainingImage], *, region_size: int, window_size: int, pixel_size: float | None,
                  level: int | None, use_mask: bool = True) -> WindowSet:
    """Plan every image and keep the windows with at least one annotated region."""
    plans, windows = [], []
    for i, item in enumerate(images):
        roi = item.detection.area if item.detection is not None else None
        mpp = pixel_size if (pixel_size is not None and item.image.pixel_size) else None
        plan = make_plan(item.image, region_size=region_size, target_pixel_size=mpp, level=level,
                         context="window", window_size=window_size, use_mask=use_mask, roi=roi)
        annotated = _annotated_regions(item, plan)
        for w, ids in enumerate(plan.windows):
            if any(annotated[r] for r in ids):
                windows.append(WindowRef(i, w))
        plans.append(plan)
    if not windows:
        raise AnnotationError("no region of the training images has annotations: paint labels, add points or give "
                              "image classes inside the tissue/valid area")
    return WindowSet(images, plans, windows)


def _annotated_regions(item: TrainingImage, plan: Plan) -> np.ndarray:
    n = len(plan.regions)
    if item.detection is not None or item.image_class is not None:
        return np.ones(n, dtype=bool)
    if item.segmentation is None:
        return np.zeros(n, dtype=bool)
    mask, mask_ds = item.segmentation.coarse_annotated()
    f = plan.downsample_to_level0 / mask_ds
    out = np.zeros(n, dtype=bool)
    for r in plan.regions:
        y0, x0, y1, x1 = (int(v * f) for v in r.core)
        out[r.id] = bool(mask[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].any())
    return out


# -- geometry of the 8 flips/rotations -----------------------------------------------------------------------------
def dihedral(a: np.ndarray, k: int, flip: bool, axes=(0, 1)) -> np.ndarray:
    if flip:
        a = np.flip(a, axis=axes[1])
    return np.ascontiguousarray(np.rot90(a, k, axes=axes))


def dihedral_points(y: np.ndarray, x: np.ndarray, h: np.ndarray, w: np.ndarray, size: int, k: int, flip: bool):
    """Continuous region-local coordinates under the same transform ``dihedral`` applies to (size, size) arrays."""
    if flip:
        x = size - x
    for _ in range(k % 4):  # np.rot90 (counter-clockwise): new[i, j] = old[j, W - 1 - i]
        y, x = size - x, y
        h, w = w, h
    return y, x, h, w


class RegionCache:
    """Raw region pixels and labels kept across epochs, up to a byte budget (least recently used goes first)."""

    def __init__(self, budget_mb: float = 1024.0):
        self.budget = int(budget_mb * 2**20)
        self.used = 0
        self._items: OrderedDict = OrderedDict()

    def get(self, key, make):
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        size = sum(v.nbytes for v in value if isinstance(v, np.ndarray))
        if size <= self.budget:
            self._items[key] = value
            self.used += size
            while self.used > self.budget:
                _, old = self._items.popitem(last=False)
                self.used -= sum(v.nbytes for v in old if isinstance(v, np.ndarray))
        return value


def iter_window(ws: WindowSet, ref: WindowRef, normaliser: Normaliser, rng: np.random.Generator | None,
                augment: Augment | None, cache: RegionCache | None = None, pixels: bool = True,
                stride: int = 4) -> Iterator[RegionSample]:
    """Yield the window's regions in stream order (after the window's augmentation), one at a time.

    ``pixels=False`` (Quick training over cached features) reads only the labels: the pixels are read by whoever
    encodes a region the cache does not hold yet. ``stride`` is the detection head's (its valid-cell grid)."""
    item, plan = ws.images[ref.image], ws.plans[ref.image]
    regions = ws.regions(ref)
    k, flip = 0, False
    if rng is not None and augment is not None and augment.geometric:
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
    if pixels and rng is not None and augment is not None and augment.translate:
        regions = _translated(regions, plan.region_size, rng)
    size = plan.window_size
    grid = np.full((size, size), -1, dtype=np.int64)
    for n, r in enumerate(regions):
        grid[r.window_pos] = n
    grid = dihedral(grid, k, flip)
    order = [(int(grid[p]), (int(p[0]), int(p[1]))) for p in np.ndindex(grid.shape) if grid[p] >= 0]
    jitter = None
    if rng is not None and augment is not None:
        jitter = _pixel_jitter(item.image, augment, rng)
    for n, position in order:
        region = regions[n]
        if pixels:
            moved = region.box != plan.regions[region.id].box  # a translated read is never cached
            raw, labels = (cache.get((ref.image, region.id), lambda r=region: _read(item, plan, r))
                           if cache and not moved else _read(item, plan, region))
            x = normaliser(raw if jitter is None else jitter(raw, rng))  # (R, R, C)
            chw = dihedral(x, k, flip).transpose(2, 0, 1).copy()
        else:
            labels = (cache.get(("labels", ref.image, region.id), lambda r=region: (read_labels(item, plan, r),))[0]
                      if cache else read_labels(item, plan, region))
            chw = np.zeros((0, 0, 0), np.float32)
        sample = RegionSample(chw, position, region_id=region.id, image=ref.image, transform=(k, flip))
        if labels is not None:
            sample.segmentation = dihedral(labels, k, flip)
        if item.detection is not None:
            sample.objects = _objects(item.detection, plan, region, k, flip, stride)
        void = region_fill(item.image, plan, region, raw) if pixels else None
        if void is not None:  # an orthomosaic's border (alpha 0, nodata): neither a class nor background
            void = dihedral(void, k, flip)
            if sample.segmentation is not None:
                sample.segmentation = np.where(void, IGNORE, sample.segmentation)
            if sample.objects is not None:
                valid = sample.objects["valid"]
                sample.objects["valid"] = valid & ~fill_cells(void, stride, valid.shape)
        yield sample


def _translated(regions: list, size: int, rng: np.random.Generator) -> list:
    """The window's regions moved together by one random offset of up to half a region, never before the image's
    first pixel (reads past its end are padded and masked as usual)."""
    import dataclasses

    half = size // 2
    dy = int(rng.integers(-min(half, min(r.box[0] for r in regions)), half + 1))
    dx = int(rng.integers(-min(half, min(r.box[1] for r in regions)), half + 1))
    if dy == 0 and dx == 0:
        return regions
    return [dataclasses.replace(r, box=(r.box[0] + dy, r.box[1] + dx, r.box[2] + dy, r.box[3] + dx))
            for r in regions]


def _read(item: TrainingImage, plan: Plan, region) -> tuple[np.ndarray, np.ndarray | None]:
    return read_region_pixels(item.image, plan, region), read_labels(item, plan, region)


def read_labels(item: TrainingImage, plan: Plan, region) -> np.ndarray | None:
    """The region's segmentation targets at the analysis level (``IGNORE`` where unlabelled), or None."""
    if item.segmentation is None:
        return None
    f = plan.downsample_to_level0
    box0 = tuple(v * f for v in region.box)
    raw = item.segmentation.read(box0, (plan.region_size, plan.region_size))
    labels = np.where(raw == item.segmentation.ignore, IGNORE, raw).astype(np.int64)
    # pixels of the region past the image edge are padding, never a class
    y0, x0, _, _ = region.box
    h, w = plan.analysis_shape
    labels[max(0, h - y0):, :] = IGNORE
    labels[:, max(0, w - x0):] = IGNORE
    return labels


def _objects(ann: DetectionAnnotations, plan: Plan, region, k: int, flip: bool, stride: int = 4) -> dict:
    f = plan.downsample_to_level0
    y0, x0, y1, x1 = (v * f for v in region.box)
    margin = 24 * f
    idx = ann.in_box((y0 - margin, x0 - margin, y1 + margin, x1 + margin))
    size = plan.region_size
    y = (ann.y[idx] - y0) / f
    x = (ann.x[idx] - x0) / f
    h, w = ann.h[idx] / f, ann.w[idx] / f
    y, x, h, w = dihedral_points(y, x, h, w, size, k, flip)
    cells = math.ceil(size / stride)
    valid = np.ones((cells, cells), dtype=bool)
    if ann.area is not None:
        valid = _area_cells(ann.area, region.box, f, cells, stride)
    # cells past the image edge hold padding: no object can be there, but nothing should be learnt from them either
    ah, aw = plan.analysis_shape
    valid[max(0, math.ceil((ah - region.box[0]) / stride)):, :] = False
    valid[:, max(0, math.ceil((aw - region.box[1]) / stride)):] = False
    valid = dihedral(valid, k, flip)
    return {"y": y, "x": x, "h": h, "w": w, "cls": ann.cls[idx], "valid": valid}


def _area_cells(area, box, f: float, cells: int, stride: int) -> np.ndarray:
    pts = np.asarray(area, float)
    if pts.ndim == 1:
        ay0, ax0, ay1, ax1 = pts
        pts = np.array([[ay0, ax0], [ay0, ax1], [ay1, ax1], [ay1, ax0]])
    local = (pts / f - np.array([box[0], box[1]])) / stride  # cell units
    return polygon_mask(local, (cells, cells))


def _pixel_jitter(image, augment: Augment, rng: np.random.Generator):
    """A per-window photometric change: gain per channel for brightfield/fluorescence, speckle for SAR (dB)."""
    kind = getattr(image, "kind", "brightfield")
    if kind == "sar":
        if augment.speckle_looks <= 0:
            return None
        looks = augment.speckle_looks

        def speckle(raw, rng):
            noise = 10 * np.log10(rng.gamma(looks, 1.0 / looks, size=raw.shape)).astype(np.float32)
            return (raw.astype(np.float32) + noise).astype(raw.dtype)

        return speckle
    if augment.colour <= 0:
        return None
    gain = 1.0 + rng.uniform(-augment.colour, augment.colour, size=image.levels[0].shape[-1]).astype(np.float32)
    top = 255.0 if image.levels[0].dtype == np.uint8 else (65535.0 if image.levels[0].dtype == np.uint16 else None)

    def colour(raw, _rng):
        out = raw.astype(np.float32) * gain
        return np.clip(out, 0, top).astype(raw.dtype) if top else out.astype(raw.dtype)

    return colour
