"""Checkpoints: one ``.safetensors`` file holding the weights and, in its metadata, the config that built them.

safetensors, not pickle: opening a model file a colleague sent must never run code. The metadata carries
``{"napari_xt_config": <XTConfig JSON>, "format_version": "1"}``, so ``load_model`` rebuilds the exact architecture
(random init, no downloads) and then checks every key and shape before loading: a file that does not match its own
config is reported (missing/unexpected keys, shape mismatches) rather than half-loaded.

``load_model`` also accepts a preset name (random init, for demos/tests) and, through the separate importer module,
released xT ``.ckpt``/``.pth`` files.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, XTConfig
from .registry import list_context_encoders, list_region_encoders
from .xt import XTModel, build_model

FORMAT_VERSION = "1"
CONFIG_KEY = "napari_xt_config"
VERSION_KEY = "format_version"
IMPORT_SUFFIXES = (".ckpt", ".pth", ".pt")

#: Named random-init models: ``load_model("tiny-hyper-seg")``. Small enough to run on a laptop CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny-hyper-seg": dict(region_encoder="tiny", region_size=256, sub_region_size=64, context_encoder="hyper",
                           heads={"segmentation": {"num_classes": 3}}, name="tiny-hyper-seg",
                           class_names={"segmentation": ["background", "tissue", "tumour"]}),
    "tiny-hyper-det": dict(region_encoder="tiny", region_size=256, sub_region_size=64, context_encoder="hyper",
                           heads={"detection": {"num_classes": 1}}, name="tiny-hyper-det"),
    "tiny-hyper-cls": dict(region_encoder="tiny", region_size=256, sub_region_size=64, context_encoder="hyper",
                           heads={"classification": {"num_classes": 2}}, name="tiny-hyper-cls"),
    "tiny-none-seg": dict(region_encoder="tiny", region_size=256, sub_region_size=64, context_encoder="none",
                          heads={"segmentation": {"num_classes": 3}}, name="tiny-none-seg"),
    "tiny-xl-seg": dict(region_encoder="tiny", region_size=256, sub_region_size=64, context_encoder="transformer_xl",
                        heads={"segmentation": {"num_classes": 3}}, name="tiny-xl-seg"),
    "swinv2_tiny-hyper-seg": dict(region_encoder="swinv2_tiny", region_size=1024, sub_region_size=256,
                                  context_encoder="hyper", heads={"segmentation": {"num_classes": 3}},
                                  name="swinv2_tiny-hyper-seg"),
}


#: Demo checkpoints shipped inside the package (``src/napari_xt/data``), made by ``scripts/make_demo_models.sh``
#: with napari-xt's own trainer on synthetic images. They show how the tool works; they are not clinical models.
DEMO_MODELS: dict[str, str] = {"demo-tissue": "demo_tissue.safetensors", "demo-sar": "demo_sar.safetensors"}


def demo_model_path(name: str) -> Path | None:
    """The shipped file of a demo model, or None when ``name`` is not one (or the file is missing)."""
    if name not in DEMO_MODELS:
        return None
    path = Path(__file__).resolve().parent.parent / "data" / DEMO_MODELS[name]
    return path if path.is_file() else None


def list_demo_models() -> list[str]:
    return [name for name in DEMO_MODELS if demo_model_path(name) is not None]


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not match the model it describes; the message says how."""


def list_presets() -> list[str]:
    return sorted(PRESETS)


def _state_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; tensors sharing storage are cloned (safetensors refuses shared storage)."""
    out, seen = {}, set()
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
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no {CONFIG_KEY!r} in the metadata; not a napari-xt checkpoint")
    if meta.get(VERSION_KEY) != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {meta.get(VERSION_KEY)!r}, this napari-xt reads "
                              f"{FORMAT_VERSION!r}")
    try:
        return XTConfig.from_json(meta[CONFIG_KEY])
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid config in metadata: {err}") from None


def _short(names: list[str], limit: int = 8) -> str:
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` naming missing/unexpected keys and shape mismatches between ``state`` and ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                    for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    problems = []
    if missing:
        problems.append(f"missing keys: {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_short(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_short(shapes)}")
    if problems:
        raise CheckpointError(f"{source} does not match the model its config builds; " + "; ".join(problems))


def load_model(path_or_name: str | Path, device: str | torch.device = "cpu") -> XTModel:
    """Load a napari-xt ``.safetensors`` file, a released xT ``.ckpt``/``.pth`` (via the importer), a shipped demo
    model (``demo-tissue``, ``demo-sar``) or a preset name (random weights).

    The model comes back in eval mode on ``device``. Nothing in the file is ever executed.
    """
    demo = demo_model_path(str(path_or_name))
    if demo is not None:
        return _load_safetensors(demo, device)
    path = Path(path_or_name)
    if path.suffix in IMPORT_SUFFIXES:
        if not path.exists():
            raise CheckpointError(f"{path}: no such file")
        try:
            importer = importlib.import_module("napari_xt.model.xt_import")
        except ModuleNotFoundError as err:
            raise CheckpointError(f"{path}: importing released xT checkpoints needs napari_xt.model.xt_import "
                                  f"({err})") from None
        model = importer.import_xt_checkpoint(path)
        return model.to(device).eval()
    if path.exists() or path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"{path}: no such file")
        return _load_safetensors(path, device)
    name = str(path_or_name)
    if name in PRESETS:
        return build_model(XTConfig.from_dict(PRESETS[name]), pretrained=False).to(device).eval()
    if name in list_region_encoders():
        # A bare region-encoder name: default geometry, the default context encoder if present, a 2-class seg head.
        context = "hyper" if "hyper" in list_context_encoders() else "none"
        config = XTConfig(region_encoder=name, context_encoder=context, name=name,
                          heads={"segmentation": {"num_classes": 2}})
        return build_model(config, pretrained=False).to(device).eval()
    raise CheckpointError(f"{name!r} is neither a file, a preset nor a region encoder; presets: "
                          f"{', '.join(list_presets())}; region encoders: {', '.join(list_region_encoders())}")


def _load_safetensors(path: Path, device: str | torch.device) -> XTModel:
    from safetensors.torch import load_file

    config = read_config(path)
    try:
        model = build_model(config, pretrained=False)
    except Exception as err:  # noqa: BLE001 - unknown encoder names, bad options...
        raise CheckpointError(f"{path}: cannot build the model its config describes: {err}") from err
    try:
        state = load_file(str(path))
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read the weights ({err})") from None
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
