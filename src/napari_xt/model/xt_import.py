"""Import released xT checkpoints (``.ckpt``/``.pth`` torch files) into napari-xt models, safely.

A released xT classification checkpoint holds ``encoder.model.*`` (a timm Swin-V2 ``features_only`` network, no
final norm, no head) and ``decoder.*`` (the "Hyper" context encoder plus a ``cls`` LayerNorm + Linear head), possibly
wrapped in ``{"state_dict": ...}`` and/or prefixed with ``module.``/``model.``. Everything about the architecture is
inferred from the keys and shapes:

==========================  =================================================================
released key                napari-xt key
==========================  =================================================================
``encoder.model.X``         ``region_encoder.model.X`` (same timm module tree)
``decoder.cls.0.*``         ``heads.classification.norm.*`` (LayerNorm)
``decoder.cls.1.*``         ``heads.classification.fc.*`` (Linear)
``decoder.X`` (others)      ``context_encoder.X`` (``cls_token``, ``input_proj``, ``layers.{i}...``)
==========================  =================================================================

Geometry: the reference cuts an ``image_size`` image (default 512) into ``region_size`` crops (default 256), runs the
Swin on each and stitches the stage maps into one map whose coarsest stage, flattened row-major over the whole image,
is the token sequence (+ CLS). In napari-xt terms that is ONE region of ``image_size`` px made of sub-regions of
``region_size`` px, which is how the imported config is set up; results match the reference exactly.

Files are opened with ``torch.load(..., weights_only=True)`` only: a pickle that would construct arbitrary objects
or run code is refused with :class:`CheckpointError`, never executed.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ._format import save_model
from .config import XTConfig
from .state_check import problems
from .xt import XTModel, build_model

#: (embed_dim, depths) of the timm Swin-V2 backbones used by xT -> our region-encoder name.
SWIN_VARIANTS: dict[tuple[int, tuple[int, ...]], str] = {
    (96, (2, 2, 6, 2)): "swinv2_tiny",
    (96, (2, 2, 18, 2)): "swinv2_small",
    (128, (2, 2, 18, 2)): "swinv2_base",
    (192, (2, 2, 18, 2)): "swinv2_large",
}
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module")
STRIP_PREFIXES = ("module.", "model.")
HEAD = "classification"


# ------------------------------------------------------------------------------------------------------- loading
def load_released_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a released checkpoint safely and return its bare state dict (wrappers and prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", path)
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _unpickling_detail(str(err))
        if "global" not in detail.lower():
            raise CheckpointError(f"{path}: not a readable torch checkpoint ({detail})", path) from None
        raise CheckpointError(
            f"{path}: refused to load: the file asks to build Python objects beyond tensors and plain containers, "
            f"which could run code when unpickled ({detail}). If you trust it, re-save just its state dict with "
            "torch.save({'state_dict': sd}, ...) and convert that.", path
        ) from None
    except Exception as err:  # zip/EOF/runtime errors of a corrupt file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})",
                              path) from None
    return unwrap_state_dict(obj, source=str(path))


def _unpickling_detail(message: str) -> str:
    """The informative line of torch's weights_only error (which object or opcode was refused)."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    for ln in lines:
        if "unsupported" in ln.lower() or "global" in ln.lower():
            return ln
    return lines[0] if lines else "unpickling failed"


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``{"state_dict": sd}`` / bare ``sd``, keys optionally prefixed ``module.``/``model.`` -> bare ``sd``."""
    for _ in range(3):  # e.g. {"state_dict": {"model": sd}}
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        kind = type(obj).__name__
        keys = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else []
        raise CheckpointError(f"{source}: no state dict of tensors found (got {kind} with keys {keys})")
    state = {str(k): v for k, v in obj.items()}
    changed = True
    while changed:  # "module.model.encoder..." -> "encoder..."
        changed = False
        for prefix in STRIP_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


# ---------------------------------------------------------------------------------------------------- inference
def _need(state: Mapping[str, torch.Tensor], key: str, dims: int | None = None) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"not a released xT checkpoint: missing key {key!r}")
    t = state[key]
    if dims is not None and t.dim() != dims:
        raise CheckpointError(f"{key} has shape {tuple(t.shape)}, expected {dims} dims")
    return t


def infer_region_encoder(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    """(our region-encoder name, input channels) from ``encoder.model.*`` keys."""
    w = _need(state, "encoder.model.patch_embed.proj.weight", 4)
    embed, in_chans = int(w.shape[0]), int(w.shape[1])
    depths = []
    for stage in range(8):
        blocks = {int(m.group(1)) for k in state
                  if (m := re.match(rf"encoder\.model\.layers_{stage}\.blocks\.(\d+)\.", k))}
        if not blocks:
            break
        depths.append(max(blocks) + 1)
    name = SWIN_VARIANTS.get((embed, tuple(depths)))
    if name is None:
        known = ", ".join(f"{v} (embed {e}, depths {list(d)})" for (e, d), v in SWIN_VARIANTS.items())
        raise CheckpointError(f"unknown Swin-V2 backbone: embed dim {embed}, depths {depths}; known: {known}")
    return name, in_chans


def _count_layers(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    if found and found != set(range(max(found) + 1)):
        raise CheckpointError(f"layer indices are not contiguous: {sorted(found)}")
    return len(found)


def infer_context_encoder(state: Mapping[str, torch.Tensor]) -> tuple[str, dict[str, Any]]:
    """(context-encoder name, its kwargs) from ``decoder.*`` keys."""
    if "decoder.layers.0.attn.qkv.weight" in state:
        hidden = int(_need(state, "decoder.cls_token", 3).shape[-1])
        layers = _count_layers(state, r"decoder\.layers\.(\d+)\.attn\.qkv\.weight$")
        inner = int(_need(state, "decoder.layers.0.mlp.gate_proj.weight", 2).shape[0])
        return "hyper", dict(hidden=hidden, layers=layers, heads=max(1, hidden // 128), mlp_ratio=inner / hidden)
    if any(re.match(r"decoder\.layers\.\d+\.mixer\.", k) for k in state):
        raise CheckpointError(
            "this is a released xT *Mamba* checkpoint (decoder.layers.{i}.mixer.*). It cannot be imported exactly "
            "yet: the reference Mamba classifier uses LayerNorm (with bias) block norms, runs layers 0, 2, ... on "
            "the reversed sequence, has no final norm and reads a CLS token appended last, while napari-xt's "
            "'mamba' encoder uses RMSNorm, a final norm_f and a token-mean summary. Importing it would give wrong "
            "outputs, so it is refused."
        )
    decoder_keys = sorted(k for k in state if k.startswith("decoder."))[:6]
    raise CheckpointError(f"unknown context encoder in checkpoint; decoder keys start {decoder_keys}")


def infer_config(state: Mapping[str, torch.Tensor], image_size: int | None = None, region_size: int | None = None,
                 name: str = "") -> XTConfig:
    """The ``XTConfig`` that rebuilds a released checkpoint's architecture in napari-xt terms."""
    image_size = 512 if image_size is None else int(image_size)
    region_size = 256 if region_size is None else int(region_size)
    if image_size % region_size:
        raise CheckpointError(f"image size {image_size} must be a multiple of the region size {region_size}")
    encoder, in_chans = infer_region_encoder(state)
    context, context_kwargs = infer_context_encoder(state)
    num_classes = int(_need(state, "decoder.cls.1.weight", 2).shape[0])
    return XTConfig(
        region_encoder=encoder,
        region_size=image_size,
        sub_region_size=region_size,
        context_encoder=context,
        context_encoder_kwargs=context_kwargs,
        heads={HEAD: {"num_classes": num_classes}},
        in_chans=in_chans,
        name=name,
        description=f"imported from released xT checkpoint {name or '(unnamed)'} "
                    f"({encoder} + {context}, {num_classes} classes, {image_size}/{region_size} px)",
    )


# ------------------------------------------------------------------------------------------------------- mapping
def map_key(key: str) -> str | None:
    """Released key -> napari-xt key (None when the key has no place in napari-xt)."""
    if key.startswith("encoder.model."):
        return "region_encoder.model." + key[len("encoder.model."):]
    if key.startswith("decoder.cls.0."):
        return f"heads.{HEAD}.norm." + key[len("decoder.cls.0."):]
    if key.startswith("decoder.cls.1."):
        return f"heads.{HEAD}.fc." + key[len("decoder.cls.1."):]
    if key.startswith("decoder."):
        return "context_encoder." + key[len("decoder."):]
    return None


def load_released_weights(model: XTModel, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Map and load ``state`` strictly; any unknown, missing or mis-shaped key raises ``CheckpointError``."""
    expected = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    back: dict[str, str] = {}
    unknown = []
    for key, tensor in state.items():
        new = map_key(key)
        if new is None or new not in expected:
            unknown.append(key)
            continue
        mapped[new], back[new] = tensor, key
    missing = sorted(set(expected) - set(mapped))
    shapes = sorted(f"{back[k]} {tuple(t.shape)} vs expected {tuple(expected[k].shape)}"
                    for k, t in mapped.items() if t.shape != expected[k].shape)
    found = problems(("unknown keys", sorted(unknown)), ("shape mismatches", shapes),
                     ("keys the model needs but the file lacks", missing))
    if found:
        raise CheckpointError(f"{source}: does not match the architecture inferred from it; " + "; ".join(found))
    model.load_state_dict(mapped, strict=True)


def import_xt_state_dict(state: Mapping[str, torch.Tensor], image_size: int | None = None,
                         region_size: int | None = None, name: str = "", source: str = "checkpoint") -> XTModel:
    """Build the napari-xt model a released state dict describes and load it (eval mode, fp32, CPU)."""
    config = infer_config(state, image_size, region_size, name=name)
    try:
        model = build_model(config, pretrained=False)
    except Exception as err:  # a geometry the encoder cannot honour, etc.
        raise CheckpointError(f"{source}: cannot build the inferred model: {err}") from err
    load_released_weights(model, state, source)
    return model.float().eval()


def import_xt_checkpoint(path: str | Path, image_size: int | None = None, region_size: int | None = None) -> XTModel:
    """Released xT ``.ckpt``/``.pth`` -> ``XTModel``.

    ``image_size`` (default 512) is the input size the checkpoint was trained on and ``region_size`` (default 256)
    the reference's crop size; they become our ``region_size`` and ``sub_region_size``.
    """
    path = Path(path)
    state = load_released_state_dict(path)
    return import_xt_state_dict(state, image_size, region_size, name=path.stem, source=str(path))


def convert_xt(ckpt: str | Path, out: str | Path, image_size: int | None = 512,
               region_size: int | None = 256) -> Path:
    """``napari-xt convert-xt``: import ``ckpt`` and write it as a napari-xt ``.safetensors``; returns the path."""
    model = import_xt_checkpoint(ckpt, image_size=image_size, region_size=region_size)
    return save_model(model, out)


__all__ = [
    "SWIN_VARIANTS", "convert_xt", "import_xt_checkpoint", "import_xt_state_dict", "infer_config",
    "infer_context_encoder", "infer_region_encoder", "load_released_state_dict", "load_released_weights", "map_key",
    "unwrap_state_dict",
]
