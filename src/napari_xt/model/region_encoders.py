"""Old home of the region encoders, kept for code that imports it: see :mod:`napari_xt.model.encoders`."""

from __future__ import annotations

from .encoders.base import RegionEncoder
from .encoders.catalogue import TIMM_ENCODERS, create_region_encoder, list_region_encoders
from .encoders.tiny import TinyConvNet

__all__ = ["RegionEncoder", "TinyConvNet", "TIMM_ENCODERS", "create_region_encoder", "list_region_encoders"]
