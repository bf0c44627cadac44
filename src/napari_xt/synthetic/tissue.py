"""A synthetic H&E-like whole-slide image with exact ground truth, rendered lazily per chunk.

Used for the sample data, the demo model and training tests: glass background, tissue islands of pink stroma,
nuclei-like dark blobs on a jittered grid and a few glands (pale lumen ringed by darker epithelium). Image and label
pyramids are point-sampled from the same analytic scene, so labels agree with pixels at every level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from ._common import PyramidSpec, cell_values, lazy_level, level0_coords, smooth_field

CLASS_NAMES = ["background", "stroma", "nucleus", "gland"]
CLASS_COLORS = [[0, 0, 0], [236, 164, 200], [72, 40, 140], [250, 220, 120]]

_NUCLEUS_CELL = 40.0
_GLAND_CELL = 900.0
_COLORS = {
    "glass": np.array([243.0, 242.0, 246.0]),
    "stroma": np.array([234.0, 160.0, 198.0]),
    "nucleus": np.array([88.0, 48.0, 138.0]),
    "lumen": np.array([250.0, 236.0, 242.0]),
    "epithelium": np.array([196.0, 104.0, 170.0]),
}


@dataclass
class TissueSample:
    """Lazy synthetic slide: ``levels`` (uint8 RGB, (y, x, 3)) and ``label_levels`` (uint8, (y, x)).

    Nothing is rendered until a chunk is computed; rendering depends only on (seed, coordinates).
    """

    height: int = 16384
    width: int = 16384
    seed: int = 0
    pixel_size: float = 0.5
    chunk: int = 1024
    spec: PyramidSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = PyramidSpec(self.height, self.width, self.chunk)
        self._scale = max(self.height, self.width) / 16384.0

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    @property
    def class_colors(self) -> list[list[int]]:
        return [list(c) for c in CLASS_COLORS]

    @property
    def levels(self) -> list[da.Array]:
        return [lazy_level(self.spec, i, self.render, 3, np.uint8) for i in range(len(self.spec.downsamples))]

    @property
    def label_levels(self) -> list[da.Array]:
        def render_labels(y0, x0, h, w, ds):
            return self.labels(y0, x0, h, w, ds)[..., None]

        return [
            lazy_level(self.spec, i, render_labels, 1, np.uint8)[..., 0]
            for i in range(len(self.spec.downsamples))
        ]

    # -- the analytic scene -------------------------------------------------------------------------------------
    def _scene(self, y: np.ndarray, x: np.ndarray):
        """Per-pixel structure: tissue mask, nucleus mask, gland lumen/epithelium masks (level-0 coordinates)."""
        s = self._scale
        tissue = smooth_field(self.seed, y, x, (7000 * s, 4100 * s, 2600 * s)) > -0.12
        # glands: at most one ellipse per large cell, fully inside its cell
        gy, gx = np.floor(y / _GLAND_CELL), np.floor(x / _GLAND_CELL)
        has_gland = cell_values(self.seed, gy, gx, 1) < 0.45
        ga = 110 + 160 * cell_values(self.seed, gy, gx, 2)
        gb = 0.55 * ga + 0.35 * ga * cell_values(self.seed, gy, gx, 3)
        margin = 300.0
        gcy = gy * _GLAND_CELL + margin + (_GLAND_CELL - 2 * margin) * cell_values(self.seed, gy, gx, 4)
        gcx = gx * _GLAND_CELL + margin + (_GLAND_CELL - 2 * margin) * cell_values(self.seed, gy, gx, 5)
        theta = np.pi * cell_values(self.seed, gy, gx, 6)
        dy, dx = y - gcy, x - gcx
        u = (dy * np.cos(theta) + dx * np.sin(theta)) / ga
        v = (-dy * np.sin(theta) + dx * np.cos(theta)) / gb
        gland_r = np.sqrt(u * u + v * v)
        gland = has_gland & tissue & (gland_r < 1.0)
        lumen = gland & (gland_r < 0.72)
        # nuclei: one per small cell with some probability, fully inside its cell
        ny, nx = np.floor(y / _NUCLEUS_CELL), np.floor(x / _NUCLEUS_CELL)
        has_nucleus = cell_values(self.seed, ny, nx, 7) < 0.6
        r = 4.0 + 5.0 * cell_values(self.seed, ny, nx, 8)
        elong = 1.0 + 0.6 * cell_values(self.seed, ny, nx, 9)
        m = 10.0
        ncy = ny * _NUCLEUS_CELL + m + (_NUCLEUS_CELL - 2 * m) * cell_values(self.seed, ny, nx, 10)
        ncx = nx * _NUCLEUS_CELL + m + (_NUCLEUS_CELL - 2 * m) * cell_values(self.seed, ny, nx, 11)
        d2 = ((y - ncy) * elong) ** 2 + ((x - ncx) / elong) ** 2
        nucleus = has_nucleus & tissue & ~gland & (d2 < r * r)
        return tissue, nucleus, gland, lumen

    def labels(self, y0: int, x0: int, h: int, w: int, ds: int = 1) -> np.ndarray:
        """Ground-truth class map of a block at downsample ``ds`` (block coordinates in that level's pixels)."""
        y, x = level0_coords(y0, x0, h, w, ds)
        tissue, nucleus, gland, _ = self._scene(y, x)
        out = np.zeros(np.broadcast(y, x).shape, dtype=np.uint8)
        out[tissue] = 1
        out[gland] = 3
        out[nucleus] = 2
        return out

    def render(self, y0: int, x0: int, h: int, w: int, ds: int = 1) -> np.ndarray:
        y, x = level0_coords(y0, x0, h, w, ds)
        tissue, nucleus, gland, lumen = self._scene(y, x)
        shape = np.broadcast(y, x).shape
        rng = np.random.default_rng([self.seed, ds, y0, x0])
        img = np.empty(shape + (3,), dtype=np.float32)
        img[:] = _COLORS["glass"]
        shade = 1.0 + 0.06 * smooth_field(self.seed + 1, y, x, (180.0, 95.0))
        stroma = _COLORS["stroma"] * shade[..., None]
        img[tissue] = stroma[tissue]
        img[gland] = _COLORS["epithelium"]
        img[lumen] = _COLORS["lumen"]
        img[nucleus] = _COLORS["nucleus"]
        img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(6.0)
        return np.clip(img, 0, 255).astype(np.uint8)
