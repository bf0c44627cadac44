"""What the dock can offer, without importing torch at module import time.

The widget must stay torch-free, but its combo boxes are filled from the model registry, the presets and the devices
torch can see. Every function here imports the model package (and so torch) lazily, inside the call, so the widget
can run them in a worker thread and the viewer never waits for ``import torch``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

#: File suffixes the model picker accepts: napari-xt checkpoints and released xT checkpoints (via the importer).
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pth")


@dataclass
class ModelInfo:
    """A model as the panel shows it: where it comes from and what its config says (no weights)."""

    key: str  # what ``load_model`` takes: a preset name or a file path
    label: str
    source: str  # "demo" | "preset" | "file"
    region_encoder: str = ""
    context_encoder: str = ""
    region_size: int = 1024
    pixel_size: float | None = None
    in_chans: int = 3
    input_kind: str = ""
    tasks: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)  # segmentation classes
    class_colors: list[list[int]] = field(default_factory=list)
    detection_names: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def random_init(self) -> bool:
        return self.source == "preset"


@dataclass
class Catalog:
    presets: list[ModelInfo]
    region_encoders: list[str]
    context_encoders: list[str]
    devices: list[str]
    unavailable: dict[str, str] = field(default_factory=dict)  # context modules that failed to import


def _info_from_config(cfg, key: str, label: str, source: str) -> ModelInfo:
    seg = cfg.heads.get("segmentation", {})
    det = cfg.heads.get("detection", {})
    names = list(cfg.class_names.get("segmentation", []))
    if not names and seg:
        names = [f"class {i}" for i in range(int(seg.get("num_classes", 0)))]
    det_names = list(cfg.class_names.get("detection", []))
    if not det_names and det:
        det_names = [f"object {i}" for i in range(int(det.get("num_classes", 1)))]
    return ModelInfo(
        key=key, label=label, source=source, region_encoder=cfg.region_encoder, context_encoder=cfg.context_encoder,
        region_size=int(cfg.region_size), pixel_size=cfg.pixel_size, in_chans=int(cfg.in_chans),
        input_kind=cfg.input_kind, tasks=sorted(cfg.heads), class_names=names,
        class_colors=[list(c) for c in cfg.class_colors.get("segmentation", [])], detection_names=det_names,
        description=cfg.description,
    )


def keep_triton_out_without_cuda() -> None:
    """Make ``import triton`` fail in a process without CUDA, before torchvision/timm get imported.

    In napari on Mesa's software OpenGL (llvmpipe: virtual machines, Xvfb, remote desktops), loading triton's LLVM
    after Mesa's crashes the process (segfault, reproduced here) when timm imports torchvision. Triton only compiles
    CUDA kernels, so without CUDA torch loses nothing by treating it as absent. Called on every path the dock uses.
    """
    if "triton" in sys.modules:
        return
    import torch

    if not torch.cuda.is_available():
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError


def detect_devices() -> list[str]:
    """Devices torch can use here, best first; always ends with ``cpu``."""
    import torch

    out = []
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out + ["cpu"]


def list_presets() -> list[str]:
    """Shipped demo models first (trained weights), then the random-weight presets."""
    from ..model.checkpoint import list_demo_models
    from ..model.checkpoint import list_presets as _list

    return list_demo_models() + _list()


def list_region_encoders() -> list[str]:
    from ..model import list_region_encoders as _list

    return _list()


def list_context_encoders() -> list[str]:
    from ..model import list_context_encoders as _list

    return _list()


def describe(key: str | os.PathLike) -> ModelInfo:
    """Describe a preset name or a checkpoint file from its config alone; raises ``ValueError`` saying why not."""
    keep_triton_out_without_cuda()
    from ..model import XTConfig
    from ..model.checkpoint import (
        PRESETS,
        CheckpointError,
        demo_model_path,
        read_config,
    )

    text = os.fspath(key)
    demo = demo_model_path(text)
    if demo is not None:
        return _info_from_config(read_config(demo), text, f"{text} (DEMO model, synthetic data)", "demo")
    if text in PRESETS:
        cfg = XTConfig.from_dict(PRESETS[text])
        return _info_from_config(cfg, text, f"{text} (preset, random weights)", "preset")
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"{path} is neither a model preset nor an existing checkpoint file.")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{path.name} is not a model checkpoint: pick a .safetensors file made by napari-xt or a "
                         "released xT .ckpt/.pth file.")
    try:
        if suffix == ".safetensors":
            cfg = read_config(path)
        else:
            from ..model import xt_import

            cfg = xt_import.infer_config(xt_import.load_released_state_dict(path))
    except CheckpointError as err:
        raise ValueError(f"Cannot use this checkpoint: {err}") from None
    except Exception as err:  # noqa: BLE001 - importers raise many types for foreign files
        raise ValueError(f"Cannot use this checkpoint: {path.name} could not be read ({type(err).__name__}: "
                         f"{err}).") from None
    return _info_from_config(cfg, str(path), path.name, "file")


def find_checkpoints(folder: str | os.PathLike | None) -> list[Path]:
    """Checkpoint files directly inside ``folder`` (and one level below), sorted by name; [] when unset/missing."""
    if not folder:
        return []
    root = Path(os.path.expanduser(os.fspath(folder)))
    if not root.is_dir():
        return []
    found = [p for pattern in ("*", "*/*") for p in root.glob(pattern)
             if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES]
    return sorted(set(found), key=lambda p: p.name.lower())


def load_catalog() -> Catalog:
    """Everything the panel's combos list; slow the first time (imports torch): call it off the main thread."""
    keep_triton_out_without_cuda()
    from .. import model

    presets = [describe(name) for name in list_presets()]
    return Catalog(presets=presets, region_encoders=list_region_encoders(),
                   context_encoders=list_context_encoders(), devices=detect_devices(),
                   unavailable=dict(model.UNAVAILABLE_CONTEXT_MODULES))


def load_model(key: str):
    """The model for a preset name or checkpoint path (torch imported here, in the caller's thread)."""
    keep_triton_out_without_cuda()
    from ..model import load_model as _load

    return _load(key)
