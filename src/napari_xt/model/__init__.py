"""xT model pieces: nested tokenization, region encoders, context encoders, heads, XTModel, checkpoints, the zoo.

Importing this package registers every built-in part (heads, region encoders and their zoo entries, every context
encoder in ``model/context/``). They are imported plainly: a broken module is a bug to see, not to skip. An optional
third-party accelerator (``mamba_ssm``) is guarded inside its own module.
"""

from __future__ import annotations

from . import encoders as _encoders  # noqa: F401  (registers every region encoder + its zoo entry)
from . import heads as _heads  # noqa: F401  (registers heads)
from .checkpoint import PRESETS, CheckpointError, list_presets, load_model, read_config, save_model
from .config import ConfigError, XTConfig
from .context import hyper as _hyper  # noqa: F401  (registers "hyper")
from .context import identity as _identity  # noqa: F401  (registers "none")
from .context import longformer as _longformer  # noqa: F401  (registers "longformer")
from .context import mamba as _mamba  # noqa: F401  (registers "mamba", "mamba_bidirectional")
from .context import xl as _xl  # noqa: F401  (registers "transformer_xl")
from .context.base import ContextEncoder
from .encoders import RegionEncoder, create_region_encoder
from .heads import decode_detections, deduplicate_across_borders
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
from .zoo import WeightSource, ZooEntry, get_entry, list_entries, register_entry, register_imported

__all__ = [
    "PRESETS", "CheckpointError", "ConfigError", "ContextEncoder", "RegionEncoder", "RegionFeatures", "RegionGrid",
    "UnknownComponentError", "WeightSource", "XTConfig", "XTModel", "ZooEntry", "build_model",
    "create_region_encoder", "crop_to_image", "cut_regions", "cut_sub_regions", "decode_detections",
    "deduplicate_across_borders", "get_context_encoder_builder", "get_entry", "get_head_builder",
    "get_region_encoder_builder", "list_context_encoders", "list_entries", "list_heads", "list_presets",
    "list_region_encoders", "load_model", "read_config", "register_context_encoder", "register_entry",
    "register_head", "register_imported", "register_region_encoder", "save_model", "stitch_feature_maps",
    "token_positions",
]
