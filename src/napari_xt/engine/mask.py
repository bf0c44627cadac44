"""Foreground masks from a low-resolution level: which regions are worth running at all.

Brightfield: tissue is darker or more saturated than glass. Fluorescence: signal above the background level.
SAR: valid (non-NaN, non-nodata) pixels. Drone orthomosaics: pixels inside the mosaic (alpha > 0, not every band at
the GeoTIFF nodata value), so no region is spent on the black or transparent border around the flight. Computed once
per plan on a level of ~1-2k px, never at full resolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..io import LargeImage
    from .plan import Plan, Region

_MASK_TARGET = 1024


def _mask_level(image) -> int:
    """The smallest level whose long side is still >= ~1024 px (or the smallest level there is)."""
    best = len(image.levels) - 1
    for i, lvl in enumerate(image.levels):
        if max(lvl.shape[:2]) >= _MASK_TARGET:
            best = i
    return best


def foreground_mask(image: LargeImage) -> tuple[np.ndarray, float]:
    """(mask, level-0 px per mask px) for ``image``; all-True when the kind has no notion of background."""
    lvl = _mask_level(image)
    data = np.asarray(image.levels[lvl])
    ds = float(image.downsamples[lvl])
    kind = getattr(image, "kind", "generic")
    if kind == "sar" or np.issubdtype(data.dtype, np.floating):
        valid = np.isfinite(data).all(axis=-1)
        nodata = getattr(image, "nodata", None)
        if nodata is not None and np.isfinite(nodata):
            valid &= ~(data == nodata).all(axis=-1)
        return valid, ds
    valid = image_pixels(image, lvl, data)
    if kind == "brightfield" and data.shape[-1] >= 3:
        # average 4x4 blocks first: per-pixel sensor noise on glass would otherwise pass the saturation test
        rgb, ds = _block_mean(data[..., :3].astype(np.float32), 4), ds * 4
        brightness = rgb.mean(axis=-1)
        saturation = rgb.max(axis=-1) - rgb.min(axis=-1)
        tissue = (saturation > 20) | (brightness < 200)
        if valid is not None:
            tissue &= _block_mean(valid[..., None].astype(np.float32), 4)[..., 0] > 0.5
        return tissue, ds
    if kind == "fluorescence":
        signal = data.astype(np.float32).max(axis=-1)
        lo, hi = np.percentile(signal, [5, 99.5])
        return (signal > lo + 0.1 * (hi - lo)) & (True if valid is None else valid), ds
    return (np.ones(data.shape[:2], dtype=bool) if valid is None else valid), ds


def image_pixels(image: LargeImage, level: int, data: np.ndarray) -> np.ndarray | None:
    """Where ``data`` (pixels of ``level``) holds image rather than fill: alpha > 0 and not every band equal to the
    nodata value; None when the image has neither an alpha band nor a nodata value (every pixel counts)."""
    nodata = getattr(image, "nodata", None)
    alpha = getattr(image, "alpha", None)
    if alpha is None and (nodata is None or not np.isfinite(nodata)):
        return None
    valid = np.ones(data.shape[:2], dtype=bool)
    if nodata is not None and np.isfinite(nodata):
        valid &= ~(data == np.asarray(nodata).astype(data.dtype)).all(axis=-1)
    if alpha is not None and level < len(alpha):
        valid &= np.asarray(alpha[level])[..., 0] > 0
    return valid


def _block_mean(data: np.ndarray, k: int) -> np.ndarray:
    h, w = (data.shape[0] // k) * k, (data.shape[1] // k) * k
    if h == 0 or w == 0:
        return data
    return data[:h, :w].reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))


def polygon_mask(vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon [(y, x), ...] (even-odd rule, pixel centres) onto a boolean grid of ``shape``."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64) + 0.5
    inside = np.zeros(shape, dtype=bool)
    vy, vx = vertices[:, 0], vertices[:, 1]
    j = len(vertices) - 1
    for i in range(len(vertices)):
        crosses = (vy[i] > yy) != (vy[j] > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (vx[j] - vx[i]) * (yy - vy[i]) / (vy[j] - vy[i]) + vx[i]
        inside ^= crosses & (xx < x_at)
        j = i
    return inside


def region_fill(image: LargeImage, plan: Plan, region: Region, pixels: np.ndarray) -> np.ndarray | None:
    """``(R, R)`` True where a region's analysis pixels are fill, not image: NaN, every band at the nodata value, or
    alpha 0; None when there is none. Training ignores them: the black or transparent border of an orthomosaic is
    neither a class nor background. ``pixels`` is what :func:`read_region_pixels` returned for ``region``."""
    nodata = getattr(image, "nodata", None)
    alpha = getattr(image, "alpha", None)
    void: np.ndarray = np.zeros(pixels.shape[:2], dtype=bool)
    if np.issubdtype(pixels.dtype, np.floating):
        void |= np.isnan(pixels).any(axis=-1)
    if nodata is not None and np.isfinite(nodata):
        void |= (pixels == np.asarray(nodata).astype(pixels.dtype)).all(axis=-1)
    if alpha is not None and plan.level < len(alpha):
        from .reader import _resample

        level = alpha[plan.level]
        lh, lw = level.shape[:2]
        s = plan.scale
        y0, x0, y1, x1 = (int(round(v * s)) for v in region.box)
        block = np.full((y1 - y0, x1 - x0), 255, dtype=level.dtype)  # past the edge: the caller masks it already
        sy0, sx0, sy1, sx1 = max(y0, 0), max(x0, 0), min(y1, lh), min(x1, lw)
        if sy1 > sy0 and sx1 > sx0:
            block[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = np.asarray(level[sy0:sy1, sx0:sx1])[..., 0]
        if block.shape != void.shape:
            block = _resample(block[..., None], (void.shape[0], void.shape[1]))[..., 0]
        void |= block == 0
    return void if void.any() else None


def fill_cells(void: np.ndarray, stride: int, cells: tuple[int, int]) -> np.ndarray:
    """``cells`` bool grid, True where most of a ``stride`` x ``stride`` block of ``void`` is fill."""
    h, w = cells[0] * stride, cells[1] * stride
    padded = np.zeros((h, w), dtype=bool)
    padded[:min(h, void.shape[0]), :min(w, void.shape[1])] = void[:h, :w]
    return padded.reshape(cells[0], stride, cells[1], stride).mean(axis=(1, 3)) > 0.5
