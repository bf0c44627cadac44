"""A synthetic dual-polarisation SAR scene (VV/VH backscatter in dB) with ships, a coastline and a nodata edge.

Speckle is multiplicative (gamma, 4 looks) over water, land and ship reflectivities; a slanted strip along one corner
is NaN (outside the swath) to exercise nodata handling. Ships are bright rotated rectangles on a jittered grid and
are listed exactly by :meth:`SarSample.ships` without rendering anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from ._common import PyramidSpec, cell_values, lazy_level, level0_coords, smooth_field

CLASS_NAMES = ["water", "land", "ship"]
CLASS_COLORS = [[20, 40, 120], [150, 120, 70], [255, 60, 60]]
NODATA_LABEL = 255

_SHIP_CELL = 600.0
# mean backscatter in dB per class and band (VV, VH)
_DB = {"water": (-21.0, -28.0), "land": (-8.0, -14.0), "ship": (6.0, -2.0)}


@dataclass
class SarSample:
    """Lazy synthetic SAR scene: ``levels`` float32 (y, x, 2) in dB, ``label_levels`` uint8 (255 = nodata)."""

    height: int = 16384
    width: int = 16384
    seed: int = 0
    pixel_size: float = 10.0  # metres
    chunk: int = 1024
    spec: PyramidSpec = field(init=False)

    def __post_init__(self) -> None:
        self.spec = PyramidSpec(self.height, self.width, self.chunk)

    band_names = ("VV", "VH")

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    @property
    def class_colors(self) -> list[list[int]]:
        return [list(c) for c in CLASS_COLORS]

    @property
    def levels(self) -> list[da.Array]:
        return [lazy_level(self.spec, i, self.render, 2, np.float32) for i in range(len(self.spec.downsamples))]

    @property
    def label_levels(self) -> list[da.Array]:
        def render_labels(y0, x0, h, w, ds):
            return self.labels(y0, x0, h, w, ds)[..., None]

        return [
            lazy_level(self.spec, i, render_labels, 1, np.uint8)[..., 0]
            for i in range(len(self.spec.downsamples))
        ]

    # -- the analytic scene -------------------------------------------------------------------------------------
    def _land(self, y, x):
        coast = 0.3 * self.width + 0.08 * self.width * smooth_field(self.seed, y, 0 * x, (0.6 * self.height,))
        islands = smooth_field(self.seed + 3, y, x, (0.23 * self.width, 0.13 * self.width, 0.071 * self.width)) > 0.72
        return (x < coast) | islands

    def _nodata(self, y, x):
        return (y / self.height + x / self.width) > 1.85

    def _ship_params(self, cy, cx):
        present = cell_values(self.seed, cy, cx, 21) < 0.3
        length = 24 + 40 * cell_values(self.seed, cy, cx, 22)
        width = 6 + 6 * cell_values(self.seed, cy, cx, 23)
        m = 60.0
        py = cy * _SHIP_CELL + m + (_SHIP_CELL - 2 * m) * cell_values(self.seed, cy, cx, 24)
        px = cx * _SHIP_CELL + m + (_SHIP_CELL - 2 * m) * cell_values(self.seed, cy, cx, 25)
        theta = np.pi * cell_values(self.seed, cy, cx, 26)
        ok = present & ~self._land(py, px) & ~self._nodata(py, px)
        return ok, py, px, length, width, theta

    def ships(self) -> np.ndarray:
        """All ships as a structured array (y, x, length, width, angle) in level-0 pixels."""
        cy = np.arange(np.ceil(self.height / _SHIP_CELL))[:, None]
        cx = np.arange(np.ceil(self.width / _SHIP_CELL))[None, :]
        ok, py, px, length, width, theta = self._ship_params(cy, cx)
        ok &= (py < self.height) & (px < self.width)
        dt = [("y", "f8"), ("x", "f8"), ("length", "f8"), ("width", "f8"), ("angle", "f8")]
        out = np.empty(int(ok.sum()), dtype=dt)
        for name, arr in zip(("y", "x", "length", "width", "angle"), (py, px, length, width, theta), strict=True):
            out[name] = arr[ok]
        return out

    def _scene(self, y, x):
        land = self._land(y, x)
        nodata = self._nodata(y, x)
        cy, cx = np.floor(y / _SHIP_CELL), np.floor(x / _SHIP_CELL)
        ok, py, px, length, width, theta = self._ship_params(cy, cx)
        dy, dx = y - py, x - px
        along = dy * np.cos(theta) + dx * np.sin(theta)
        across = -dy * np.sin(theta) + dx * np.cos(theta)
        ship = ok & (np.abs(along) < length / 2) & (np.abs(across) < width / 2) & ~land & ~nodata
        return land, ship, nodata

    def labels(self, y0: int, x0: int, h: int, w: int, ds: int = 1) -> np.ndarray:
        y, x = level0_coords(y0, x0, h, w, ds)
        land, ship, nodata = self._scene(y, x)
        out = np.zeros(np.broadcast(y, x).shape, dtype=np.uint8)
        out[land] = 1
        out[ship] = 2
        out[nodata] = NODATA_LABEL
        return out

    def render(self, y0: int, x0: int, h: int, w: int, ds: int = 1) -> np.ndarray:
        y, x = level0_coords(y0, x0, h, w, ds)
        land, ship, nodata = self._scene(y, x)
        shape = np.broadcast(y, x).shape
        rng = np.random.default_rng([self.seed, ds, y0, x0])
        texture = 2.5 * smooth_field(self.seed + 5, y, x, (700.0, 260.0))
        out = np.empty(shape + (2,), dtype=np.float32)
        looks = 4.0
        for b in range(2):
            mean_db = np.full(shape, _DB["water"][b])
            mean_db = np.where(land, _DB["land"][b] + texture, mean_db)
            mean_db = np.where(ship, _DB["ship"][b], mean_db)
            power = 10 ** (mean_db / 10) * rng.gamma(looks, 1.0 / looks, size=shape)
            out[..., b] = 10 * np.log10(power)
        out[nodata] = np.nan
        return out
