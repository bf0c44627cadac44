"""The napari-xt checkpoint file: one ``.safetensors`` holding the weights and, in its metadata, the config.

safetensors, not pickle: opening a model file a colleague sent must never run code. The metadata carries
``{"napari_xt_config": <XTConfig JSON>, "format_version": "1"}``, so the exact architecture is rebuilt (random init,
no downloads) and every key and shape is checked before loading: a file that does not match its own config is
reported (missing/unexpected keys, shape mismatches) rather than half-loaded.

This module sits below both ``checkpoint.py`` (the ``load_model`` front door) and ``xt_import.py`` (released
checkpoints, which it writes with :func:`save_model`), so neither has to import the other's internals.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import CheckpointError
from .config import ConfigError, XTConfig
from .state_check import check_state_dict, short_list
from .xt import XTModel, build_model

FORMAT_VERSION = "1"
CONFIG_KEY = "napari_xt_config"
VERSION_KEY = "format_version"


def _state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; tensors sharing storage are cloned (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr is not None and ptr[0] in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr[0])
        out[key] = t
    return out


def save_model(model: XTModel, path: str | Path) -> Path:
    """Write ``model`` to ``path`` (``.safetensors`` appended if missing); returns the path written."""
    from safetensors.torch import save_file

    if not isinstance(model, XTModel):
        raise CheckpointError(f"save_model needs an XTModel, got {type(model).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {CONFIG_KEY: model.config.to_json(sort_keys=True), VERSION_KEY: FORMAT_VERSION}
    save_file(_state_for_saving(model), str(path), metadata=meta)
    return path


def read_config(path: str | Path) -> XTConfig:
    """The config stored in a napari-xt ``.safetensors`` file, without reading the weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})", path) from None
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no {CONFIG_KEY!r} in the metadata; not a napari-xt checkpoint", path)
    if meta.get(VERSION_KEY) != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta.get(VERSION_KEY)!r}, this napari-xt reads "
                              f"{FORMAT_VERSION!r}", path)
    try:
        return XTConfig.from_json(meta[CONFIG_KEY])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid config in metadata: {err}", path) from None


def load_safetensors(path: Path, device: str | torch.device = "cpu") -> XTModel:
    """A napari-xt ``.safetensors`` file -> its model (eval mode, on ``device``); ``CheckpointError`` says why not."""
    from safetensors import safe_open

    config = read_config(path)
    try:
        model = build_model(config, pretrained=False)
    except Exception as err:  # unknown encoder names, bad options...
        raise CheckpointError(f"{path}: cannot build the model its config describes: {err}", path) from err
    try:
        # tensor by tensor, not ``load_file``: that reads every tensor in one call holding the GIL, which in the dock
        # froze the viewer's event loop while the model loaded (issue 25); between tensors other threads run
        with safe_open(str(path), framework="pt") as f:
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read the weights ({err})", path) from None
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


__all__ = [
    "CONFIG_KEY", "FORMAT_VERSION", "VERSION_KEY", "CheckpointError", "check_state_dict", "load_safetensors",
    "read_config", "save_model", "short_list",
]
