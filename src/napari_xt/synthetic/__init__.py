"""Deterministic, lazily rendered sample images with exact ground truth (tissue slide, SAR scene)."""

from .sar import SarSample
from .tissue import TissueSample

__all__ = ["SarSample", "TissueSample"]
