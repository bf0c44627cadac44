"""``load_model``: the one front door to a model, by file or by zoo name; plus the checkpoint format's public names.

A path to a file goes to the file loaders: a napari-xt ``.safetensors`` (weights + config, see :mod:`._format`) or a
released xT ``.ckpt``/``.pth``/``.pt`` (through :mod:`.xt_import`, weights-only unpickling). Anything else is a name
in the model zoo (:mod:`.zoo`): a demo model loads its shipped file, a preset is built with random weights, an
imported entry loads its file. A region-encoder name is refused with :class:`EncoderIsNotAModel` (a backbone is not a
model: train one from it), and an unknown name raises :class:`UnknownModel` listing every name by kind.

``PRESETS``, ``DEMO_MODELS``, ``list_presets`` and ``demo_model_path`` are read-only views of the zoo, kept for code
written before it existed.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, EncoderIsNotAModel, UnknownModel
from ._format import (
    CONFIG_KEY,
    FORMAT_VERSION,
    VERSION_KEY,
    check_state_dict,
    load_safetensors,
    read_config,
    save_model,
)
from .config import XTConfig
from .encoders.recipe import SPEC_PREFIXES
from .registry import list_region_encoders
from .xt import XTModel, build_model
from .xt_import import import_xt_checkpoint
from .zoo import FILE_SUFFIXES, Kind, ZooEntry, find_entry, known_names, list_entries

#: Released xT checkpoints (torch pickles, read weights-only through the importer).
IMPORT_SUFFIXES = (".ckpt", ".pth", ".pt")
#: Encoder specs that name a backbone, never a model (see issue 12: ``timm:NAME``, ``hf-hub:ORG/REPO``).
ENCODER_SPEC_PREFIXES = SPEC_PREFIXES


class _ZooView(Mapping[str, Any]):
    """A read-only ``{name: value}`` view of the zoo entries of one kind (always current)."""

    def __init__(self, kind: Kind, value: Callable[[ZooEntry], Any]) -> None:
        self._kind, self._value = kind, value

    def __getitem__(self, name: str) -> Any:
        entry = find_entry(name)
        if entry is None or entry.kind != self._kind:
            raise KeyError(name)
        return self._value(entry)

    def __iter__(self) -> Iterator[str]:
        return iter([e.name for e in list_entries(self._kind)])

    def __len__(self) -> int:
        return len(list_entries(self._kind))

    def __repr__(self) -> str:
        return f"<zoo {self._kind} entries: {', '.join(self)}>"


#: ``{preset name: XTConfig dict}`` (a fresh copy per lookup): named random-init models, view of the zoo.
PRESETS: Mapping[str, dict[str, Any]] = _ZooView("preset", lambda e: copy.deepcopy(dict(e.config)))
#: ``{demo name: file name in napari_xt/data}``: the shipped demo checkpoints, view of the zoo.
DEMO_MODELS: Mapping[str, str] = _ZooView("demo", lambda e: e.weights.ref)


def demo_model_path(name: str) -> Path | None:
    """The shipped file of a demo model, or None when ``name`` is not one (or the file is missing)."""
    entry = find_entry(name)
    if entry is None or entry.kind != "demo" or not entry.available:
        return None
    return entry.weights.path()


def list_demo_models() -> list[str]:
    """Demo models whose shipped file is present, in zoo order."""
    return [e.name for e in list_entries("demo") if e.available]


def list_presets() -> list[str]:
    """Preset names, sorted."""
    return sorted(PRESETS)


def is_model_name(text: str) -> bool:
    """True when ``text`` is to be looked up in the zoo rather than opened as a file.

    A zoo name (or an encoder spec such as ``timm:NAME``) always is. Otherwise a string with a path separator or a
    model-file suffix, or naming something that exists on disk, is a path.
    """
    if find_entry(text) is not None or text.startswith(ENCODER_SPEC_PREFIXES):
        return True
    if "/" in text or "\\" in text or text.lower().endswith(FILE_SUFFIXES):
        return False
    return not Path(text).exists()


def load_model(name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu") -> XTModel:
    """The model behind a zoo name or a model file, in eval mode on ``device``. Nothing in a file is ever executed.

    Raises :class:`CheckpointError` for a file that is missing or bad, :class:`EncoderIsNotAModel` for a region
    encoder's name, :class:`UnknownModel` for any other name (all ``ValueError``s with one-sentence messages).
    """
    if not isinstance(name_or_path, os.PathLike) and is_model_name(str(name_or_path)):
        return load_zoo_model(str(name_or_path), device)
    return load_model_file(name_or_path, device)


def load_model_file(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> XTModel:
    """A napari-xt ``.safetensors`` or a released xT ``.ckpt``/``.pth``/``.pt`` file -> its model."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", path)
    if path.suffix.lower() in IMPORT_SUFFIXES:
        return import_xt_checkpoint(path).to(device).eval()
    return load_safetensors(path, device)


def load_zoo_model(name: str, device: str | torch.device = "cpu") -> XTModel:
    """The model a zoo entry names; see :func:`load_model` for the errors."""
    entry = find_entry(name)
    if entry is None or entry.kind == "encoder":
        raise _not_a_model(name)
    if entry.kind == "preset":
        return build_model(entry.xt_config(), pretrained=False).to(device).eval()
    path = entry.weights.path()
    if path is None or not path.is_file():
        fix = ("reinstall napari-xt, or run scripts/make_demo_models.sh in a source checkout" if entry.kind == "demo"
               else "register the file again where it now is")
        raise CheckpointError(f"{entry.kind} model {name!r}: its weights file {path} is missing ({fix})", path)
    return load_model_file(path, device)


def _not_a_model(name: str) -> UnknownModel:
    """The error for a name that is no model in the zoo: an encoder (with the train hint) or unknown."""
    entry = find_entry(name)
    encoder = (entry is not None and entry.kind == "encoder") or name in list_region_encoders() \
        or name.startswith(ENCODER_SPEC_PREFIXES)
    return EncoderIsNotAModel(name, known_names()) if encoder else UnknownModel(name, known_names())


def describe_config(name_or_path: str | os.PathLike[str]) -> XTConfig:
    """The config of a zoo model or a model file without building the model (released files: inferred from keys)."""
    if not isinstance(name_or_path, os.PathLike) and is_model_name(str(name_or_path)):
        name = str(name_or_path)
        entry = find_entry(name)
        if entry is None or entry.kind == "encoder":
            raise _not_a_model(name)
        if entry.kind == "preset" or (entry.kind == "demo" and entry.config):
            return entry.xt_config()
        path = entry.weights.path()
        if path is None:
            raise CheckpointError(f"{entry.kind} model {name!r} has no weights file")
        return describe_config(path)
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", path)
    if path.suffix.lower() in IMPORT_SUFFIXES:
        from .xt_import import infer_config, load_released_state_dict

        return infer_config(load_released_state_dict(path), name=path.stem)
    return read_config(path)


__all__ = [
    "CONFIG_KEY", "DEMO_MODELS", "ENCODER_SPEC_PREFIXES", "FORMAT_VERSION", "IMPORT_SUFFIXES", "PRESETS",
    "VERSION_KEY", "CheckpointError", "check_state_dict", "demo_model_path", "describe_config", "is_model_name",
    "list_demo_models", "list_presets", "load_model", "load_model_file", "load_zoo_model", "read_config",
    "save_model",
]
