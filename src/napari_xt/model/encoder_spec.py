"""Old home of the encoder recipes and the questions about an encoder, kept for code that imports it: see
:mod:`napari_xt.model.encoders.recipe` (recipes, the builder) and :mod:`napari_xt.model.encoders.catalogue` (the
questions, beside the catalogue they read)."""

from __future__ import annotations

from .encoders.catalogue import (
    create_from_spec,
    has_pretrained,
    normalisation,
    patch_size_of,
    pin_options,
    recipe_for,
    suggest_sub_region,
    weights_source,
)
from .encoders.recipe import (
    OWN_OPTIONS,
    SPEC_PREFIXES,
    Recipe,
    build_encoder,
    hub_recipe,
    is_plain_vit,
    is_spec,
    read_hub_config,
    timm_recipe,
    with_name,
)

__all__ = [
    "OWN_OPTIONS", "SPEC_PREFIXES", "Recipe", "build_encoder", "create_from_spec", "hub_recipe", "is_plain_vit",
    "has_pretrained", "is_spec", "normalisation", "patch_size_of", "pin_options", "read_hub_config", "recipe_for",
    "suggest_sub_region", "timm_recipe", "weights_source", "with_name",
]
