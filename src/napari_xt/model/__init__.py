"""xT model pieces: nested tokenization, region encoders, context encoders, heads, XTModel, checkpoints.

Importing this package registers every built-in part. Context encoders living in ``model/context/*.py`` are imported
by module name and guardedly: a module that is missing (or fails to import) is logged and skipped, so the rest of the
package keeps working while those modules evolve.
"""

from __future__ import annotations

import importlib
import logging

from . import heads as _heads  # noqa: F401  (registers heads)
from . import region_encoders as _region_encoders  # noqa: F401  (registers region encoders)
from .checkpoint import CheckpointError, PRESETS, list_presets, load_model, read_config, save_model
from .config import ConfigError, XTConfig
from .context import identity as _identity  # noqa: F401  (registers "none")
from .context.base import ContextEncoder
from .heads import decode_detections, deduplicate_across_borders
from .region_encoders import RegionEncoder, create_region_encoder
from .registry import (
    UnknownComponentError,
    get_context_encoder_builder,
    get_head_builder,
    get_region_encoder_builder,
    list_context_encoders,
    list_heads,
    list_region_encoders,
    register_context_encoder,
    register_head,
    register_region_encoder,
)
from .tokenize import RegionGrid, crop_to_image, cut_regions, cut_sub_regions, stitch_feature_maps, token_positions
from .xt import RegionFeatures, XTModel, build_model

log = logging.getLogger(__name__)

#: Context-encoder modules written alongside this package; each registers its encoders on import.
CONTEXT_MODULES = ("hyper", "xl", "mamba", "longformer")
#: Modules that could not be imported, with the reason (shown by ``napari-xt info`` and in bug reports).
UNAVAILABLE_CONTEXT_MODULES: dict[str, str] = {}

for _name in CONTEXT_MODULES:
    try:
        importlib.import_module(f"napari_xt.model.context.{_name}")
    except Exception as _err:  # noqa: BLE001 - one broken/missing encoder must not break the package
        UNAVAILABLE_CONTEXT_MODULES[_name] = f"{type(_err).__name__}: {_err}"
        log.debug("context encoder module %r not available: %s", _name, _err)

__all__ = [
    "CONTEXT_MODULES", "UNAVAILABLE_CONTEXT_MODULES", "CheckpointError", "ConfigError", "ContextEncoder",
    "PRESETS", "RegionEncoder", "RegionFeatures", "RegionGrid", "UnknownComponentError", "XTConfig", "XTModel",
    "build_model", "create_region_encoder", "crop_to_image", "cut_regions", "cut_sub_regions", "decode_detections",
    "deduplicate_across_borders", "get_context_encoder_builder", "get_head_builder", "get_region_encoder_builder",
    "list_context_encoders", "list_heads", "list_presets", "list_region_encoders", "load_model", "read_config",
    "register_context_encoder", "register_head", "register_region_encoder", "save_model", "stitch_feature_maps",
    "token_positions",
]
