"""Deterministic, chunk-local randomness for the synthetic samples.

Every pixel of a synthetic image must be computable from its coordinates alone, so that any chunk at any pyramid
level can be rendered on demand (a 16k x 16k sample costs nothing until viewed) and renders the same every time.
Structures (nuclei, glands, ships) sit on jittered grids whose cells draw their parameters from an integer hash of
(seed, cell row, cell column), which is what lets a chunk find the objects reaching into it without a global list.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def hash_uniform(seed: int, iy: np.ndarray, ix: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) floats from integer coordinates (splitmix64 finaliser): stateless and vectorised."""
    with np.errstate(over="ignore"):
        z = (
            np.asarray(iy, dtype=np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ np.asarray(ix, dtype=np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            ^ np.uint64((seed * 1_000_003 + stream * 7919) & 0xFFFFFFFFFFFF)
        )
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def cell_values(seed: int, cy: np.ndarray, cx: np.ndarray, stream: int) -> np.ndarray:
    """``hash_uniform`` for a column of cell rows ``cy`` (h, 1) and a row of cell columns ``cx`` (1, w).

    Hashes each distinct cell once and gathers, which is what makes rendering a chunk cheap: a 1024 px chunk spans
    a few dozen cells per axis but a million pixels.
    """
    uy, iy = np.unique(cy, return_inverse=True)
    ux, ix = np.unique(cx, return_inverse=True)
    grid = hash_uniform(seed, uy[:, None], ux[None, :], stream)
    return grid[iy.reshape(cy.shape), ix.reshape(cx.shape)]


def smooth_field(seed: int, y: np.ndarray, x: np.ndarray, wavelengths: tuple[float, ...]) -> np.ndarray:
    """A smooth random field in [-1, 1] made of a few oriented sinusoids; cheap and globally consistent."""
    field = np.zeros(np.broadcast(y, x).shape, dtype=np.float32)
    n = 0
    for i, wl in enumerate(wavelengths):
        for j in range(3):
            u = hash_uniform(seed, np.array(i), np.array(j), stream=11)
            phase = hash_uniform(seed, np.array(i), np.array(j), stream=12) * 2 * np.pi
            angle = u * np.pi
            k = 2 * np.pi / wl
            field += np.sin(np.float32(k * np.cos(angle)) * x + np.float32(k * np.sin(angle)) * y + np.float32(phase))
            n += 1
    return field / np.sqrt(n * 0.5) / 2.0


@dataclass(frozen=True)
class PyramidSpec:
    """Shape of a synthetic pyramid: level-0 size, chunk size and the number of 2x levels."""

    height: int
    width: int
    chunk: int = 1024
    min_size: int = 512

    @property
    def downsamples(self) -> list[int]:
        out = [1]
        while max(self.height, self.width) // (out[-1] * 2) >= self.min_size:
            out.append(out[-1] * 2)
        return out

    def level_shape(self, level: int) -> tuple[int, int]:
        ds = self.downsamples[level]
        return (-(-self.height // ds), -(-self.width // ds))


def lazy_level(spec: PyramidSpec, level: int, render, channels: int, dtype) -> da.Array:
    """A dask array (y, x, c) whose chunks call ``render(y0, x0, h, w, downsample)`` only when computed.

    ``render`` receives level-0 pixel-centre coordinates implicitly through (y0, x0, downsample), so every level shows
    the same scene sampled more coarsely.
    """
    ds = spec.downsamples[level]
    h, w = spec.level_shape(level)
    ch = spec.chunk

    def block(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        return render(y0, x0, y1 - y0, x1 - x0, ds)

    chunks = (_splits(h, ch), _splits(w, ch), (channels,))
    return da.map_blocks(block, chunks=chunks, dtype=dtype, meta=np.empty((0, 0, 0), dtype=dtype))


def _splits(n: int, size: int) -> tuple[int, ...]:
    full, rest = divmod(n, size)
    return (size,) * full + ((rest,) if rest else ())


def level0_coords(y0: int, x0: int, h: int, w: int, ds: int) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 coordinates of the centres of a block's pixels at downsample ``ds``."""
    ys = ((np.arange(y0, y0 + h, dtype=np.float64) + 0.5) * ds - 0.5).astype(np.float32)
    xs = ((np.arange(x0, x0 + w, dtype=np.float64) + 0.5) * ds - 0.5).astype(np.float32)
    return ys[:, None], xs[None, :]
