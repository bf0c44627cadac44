"""A synthetic sample as a :class:`napari_xt.io.LargeImage`, so the engine runs on it exactly as on a file.

Benchmarks use it for images far larger than the disk would comfortably hold (64k x 64k): pixels are rendered on
demand, per read, and never stored.
"""

from __future__ import annotations

import numpy as np

from ..io import LargeImage


class _SampleSource:
    def __init__(self, sample, level: int):
        self._sample, self._ds = sample, sample.spec.downsamples[level]
        h, w = sample.spec.level_shape(level)
        c = 3 if sample.__class__.__name__ == "TissueSample" else 2
        self.shape = (h, w, c)
        self.dtype = np.dtype(np.uint8 if c == 3 else np.float32)
        self.tile = (sample.chunk, sample.chunk)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self._sample.render(y0, x0, y1 - y0, x1 - x0, self._ds)


def synthetic_image(sample) -> LargeImage:
    """Wrap a :class:`TissueSample` or :class:`SarSample` (rendered lazily, never stored)."""
    tissue = sample.__class__.__name__ == "TissueSample"
    sources = [_SampleSource(sample, i) for i in range(len(sample.spec.downsamples))]
    return LargeImage(
        f"synthetic-{'tissue' if tissue else 'sar'}-{sample.height}x{sample.width}-seed{sample.seed}",
        sources,
        format="synthetic",
        vendor="napari-xt",
        pixel_size=(sample.pixel_size, sample.pixel_size),
        pixel_unit="um" if tissue else "m",
        band_names=["R", "G", "B"] if tissue else list(sample.band_names),
        kind="brightfield" if tissue else "sar",
        tile_size=(sample.chunk, sample.chunk),
        name_token=f"{sample.height}x{sample.width}-{sample.seed}",
    )
