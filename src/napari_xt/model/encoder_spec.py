"""Old home of the encoder recipes and the questions about an encoder, kept for code that imports it: see
:mod:`napari_xt.model.encoders.recipe` (recipes, the builder) and :mod:`napari_xt.model.encoders.catalogue` (the
questions, beside the catalogue they read)."""

from __future__ import annotations

from .encoders import suggest_sub_region, weights_source
from .encoders.catalogue import has_pretrained, normalisation, pin_options, recipe_for
from .encoders.recipe import Recipe, build_encoder, is_spec, timm_recipe

__all__ = [
    "Recipe", "build_encoder", "has_pretrained", "is_spec", "normalisation", "pin_options", "recipe_for",
    "suggest_sub_region", "timm_recipe", "weights_source",
]
