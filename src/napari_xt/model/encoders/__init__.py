"""Region encoders: the type, the builders and the one catalogue of every encoder napari-xt builds by name.

* :mod:`.base`: :class:`RegionEncoder` alone (what the model, the builders and the neck share);
* :mod:`.tiny`: the small conv net for tests, the demo models and CPUs;
* :mod:`.vit_neck`: a plain ViT's token grid turned into stride-4..32 maps (ViTDet's simple feature pyramid);
* :mod:`.recipe`: :class:`Recipe` (how to build one backbone) and :func:`build_encoder` (honest weights);
* :mod:`.loading`: a weights file into a timm model, every key checked;
* :mod:`.catalogue`: every named encoder registered once (builder + zoo entry), and the questions asked of them
  (``recipe_for``, ``has_pretrained``, ``weights_source``, ``normalisation``, ``suggest_sub_region``, ...).

Arrows point one way: ``catalogue -> recipe -> vit_neck, loading -> base``; nothing reads the catalogue back.
Importing this package registers every encoder.
"""

from __future__ import annotations

from . import catalogue
from .base import RegionEncoder
from .catalogue import CATALOGUE, create_region_encoder, suggest_sub_region, weights_source
from .recipe import Recipe

__all__ = ["CATALOGUE", "Recipe", "RegionEncoder", "catalogue", "create_region_encoder", "suggest_sub_region",
           "weights_source"]
