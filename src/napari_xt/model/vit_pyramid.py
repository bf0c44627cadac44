"""Old home of the plain-ViT feature pyramid, kept for code that imports it: see
:mod:`napari_xt.model.encoders.vit_neck` (the neck) and :mod:`napari_xt.model.encoders.loading` (checked weights)."""

from __future__ import annotations

from .encoders.loading import checked_state, load_vit_weights
from .encoders.vit_neck import STRIDES, SimplePyramid, ViTRegionEncoder, check_sub_region, valid_multiple

__all__ = [
    "STRIDES", "SimplePyramid", "ViTRegionEncoder", "check_sub_region", "checked_state", "load_vit_weights",
    "valid_multiple",
]
