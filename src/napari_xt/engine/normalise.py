"""Pixels to model input, per the checkpoint's config: the preprocessing can never drift from the weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ChannelMismatch

if TYPE_CHECKING:
    from ..io import LargeImage
    from ..model.config import XTConfig


@dataclass
class Normaliser:
    mean: np.ndarray
    std: np.ndarray
    scale: float  # divide raw values by this first (255 for uint8 images, 1 for float/SAR)
    channels: int

    @classmethod
    def from_config(cls, config: XTConfig, image: LargeImage) -> Normaliser:
        have = image.levels[0].shape[-1]
        want = config.in_chans
        if have != want and not (have == 4 and want == 3):
            raise ChannelMismatch(want, have, image=str(getattr(image, "path", "") or ""),
                                  kind=str(getattr(image, "kind", "") or ""))
        dtype = np.dtype(image.dtype if hasattr(image, "dtype") else image.levels[0].dtype)
        scale = 255.0 if dtype == np.uint8 else (65535.0 if dtype == np.uint16 else 1.0)
        mean = np.asarray(config.mean, dtype=np.float32)[:want]
        std = np.asarray(config.std, dtype=np.float32)[:want]
        return cls(mean, std, scale, want)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, C) raw -> (H, W, C) float32 normalised; NaN (SAR nodata) becomes 0 after normalising."""
        x = pixels[..., : self.channels].astype(np.float32)
        if self.scale != 1.0:
            x /= self.scale
        x = (x - self.mean) / self.std
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
