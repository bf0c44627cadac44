"""The model zoo: every named model and region encoder napari-xt knows, in one registry (timm style).

An entry (:class:`ZooEntry`) says what the name is (``kind``), what it does (``description``), how it is built
(``config``), where its weights come from (``weights``), under which licence and whether they are gated. Four kinds:

``demo``      a trained model whose ``.safetensors`` ships inside the package (``napari_xt/data``); ``config`` is the
              XTConfig stored in that file.
``preset``    a named architecture (an XTConfig dict) built with random weights, for trying the tool and for tests.
``encoder``   a region encoder (backbone). Not a model: a model is built and trained from it
              (``napari-xt train --region-encoder NAME``); ``config`` is its builder spec.
``imported``  a released xT checkpoint in a local file, loaded through the importer (``model/xt_import.py``). None is
              registered by default: released weights cannot be fetched or verified here, so an entry is only made
              by whoever has the file (:func:`register_imported`).

``load_model``, the dock's model list, ``napari-xt models`` and the CLI's ``--help`` all read this registry. The
module is torch-free (the demo configs are read from the safetensors JSON header), so listing is cheap.
"""

from __future__ import annotations

import copy
import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ..errors import UnknownModel
from .config import IMAGENET_MEAN, IMAGENET_STD, XTConfig

Kind = Literal["demo", "preset", "encoder", "imported"]
WeightKind = Literal["shipped", "random", "timm", "hub", "file", "package"]

#: Entry kinds, in the order listings show them.
KINDS: tuple[Kind, ...] = get_args(Kind)
#: Where shipped weights live (``WeightSource("shipped", <file name>)``).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
#: Suffixes of model files; a zoo name never ends with one, so names and paths cannot be confused.
FILE_SUFFIXES = (".safetensors", ".ckpt", ".pth", ".pt")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class WeightSource:
    """Where an entry's weights come from.

    ``kind``: ``shipped`` (``ref`` is a file name in ``napari_xt/data``), ``random`` (random init; no weights),
    ``timm`` (``ref`` is the timm model name whose pretrained weights live on the hub, see ``model/weights.py``),
    ``hub`` (``ref`` is a hub id such as ``hf-hub:org/repo``), ``file`` (``ref`` is a local path), ``package`` (``ref``
    is a pip distribution that ships the file: found by import, no network).
    """

    kind: WeightKind
    ref: str = ""

    def path(self) -> Path | None:
        """The file holding the weights (``shipped``/``file``); None for the other kinds."""
        if self.kind == "shipped":
            return DATA_DIR / self.ref
        if self.kind == "file":
            return Path(self.ref).expanduser()
        return None

    @property
    def available(self) -> bool:
        """False only when the weights should be in a file that is not there (random/timm/hub: not checked)."""
        path = self.path()
        return path is None or path.is_file()

    def describe(self) -> str:
        """One phrase for listings: ``shipped file demo_tissue.safetensors``, ``random init``, ..."""
        missing = "" if self.available else " (MISSING)"
        return {
            "shipped": f"shipped file {self.ref}{missing}",
            "random": "random init (no trained weights)",
            "timm": f"timm pretrained {self.ref}",
            "hub": f"hub {self.ref}",
            "file": f"file {self.ref}{missing}",
            "package": f"installed package {self.ref} (pip install {self.ref})",
        }[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ref": self.ref, "available": self.available}


@dataclass(frozen=True, eq=False)
class ZooEntry:
    """One named model or encoder. ``config`` is an XTConfig dict (demo, preset) or an encoder's builder spec.

    ``licence`` is the licence of the weights (SPDX id; "" when there are none, i.e. random init); ``gated`` says the
    weights need an account/token on the hub (None: not confirmed either way, they may). ``group`` ("pathology",
    "remote sensing", "general", "small") and ``tags`` organise listings. The encoder fields (``native_size``,
    ``mean``/``std``, ``patch_size`` of plain ViTs, ``registers`` tokens) describe the backbone's native input; None/0
    where they do not apply.
    """

    name: str
    kind: Kind
    description: str
    config: Mapping[str, Any]
    weights: WeightSource
    licence: str = ""
    gated: bool | None = False
    group: str = ""
    tags: tuple[str, ...] = ()
    native_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    patch_size: int | None = None
    registers: int = 0

    @property
    def is_model(self) -> bool:
        """True for entries ``load_model`` loads (everything but encoders)."""
        return self.kind != "encoder"

    @property
    def available(self) -> bool:
        """False when the entry's weights file is missing (a demo model not built into this copy)."""
        return self.weights.available

    def xt_config(self) -> XTConfig:
        """The model's XTConfig (demo, preset); ``ValueError`` for encoders and imported files (read the file)."""
        if self.kind not in ("demo", "preset") or not self.config:
            raise ValueError(f"zoo entry {self.name!r} ({self.kind}) carries no model config")
        return XTConfig.from_dict(dict(copy.deepcopy(self.config)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (``napari-xt models --json``)."""
        return {
            "name": self.name, "kind": self.kind, "description": self.description,
            "config": copy.deepcopy(dict(self.config)), "weights": self.weights.to_dict(), "licence": self.licence,
            "gated": self.gated, "group": self.group, "tags": list(self.tags), "native_size": self.native_size,
            "mean": None if self.mean is None else list(self.mean), "std": None if self.std is None else list(self.std),
            "patch_size": self.patch_size, "registers": self.registers,
        }


_ZOO: dict[str, ZooEntry] = {}


def _check(entry: ZooEntry) -> None:
    if entry.kind not in KINDS:
        raise ValueError(f"zoo entry {entry.name!r}: kind must be one of {KINDS}, got {entry.kind!r}")
    if not _NAME.match(entry.name) or entry.name.lower().endswith(FILE_SUFFIXES):
        raise ValueError(f"zoo entry name {entry.name!r}: letters, digits and _.+- only, not ending like a file "
                         f"({', '.join(FILE_SUFFIXES)})")
    expected: dict[str, tuple[str, ...]] = {"demo": ("shipped",), "preset": ("random",),
                                            "encoder": ("random", "timm", "hub", "file", "package"),
                                            "imported": ("file",)}
    if entry.weights.kind not in expected[entry.kind]:
        raise ValueError(f"zoo entry {entry.name!r}: a {entry.kind} entry's weights come from "
                         f"{' or '.join(expected[entry.kind])}, not {entry.weights.kind!r}")
    if entry.kind == "preset":
        XTConfig.from_dict(dict(copy.deepcopy(entry.config)))  # raises ConfigError naming the field


def register_entry(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to the zoo and return it. A name can be registered once (the same entry again is a no-op)."""
    _check(entry)
    old = _ZOO.get(entry.name)
    if old is not None and old.to_dict() != entry.to_dict():
        raise ValueError(f"zoo entry {entry.name!r} is already registered (as a {old.kind})")
    _ZOO[entry.name] = entry
    return entry


def unregister_entry(name: str) -> None:
    """Remove an entry (tests, and a user replacing an imported file); unknown names are ignored."""
    _ZOO.pop(name, None)


def list_entries(kind: Kind | None = None) -> list[ZooEntry]:
    """Entries grouped by kind (demo, preset, encoder, imported), each kind in registration order."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    kinds = KINDS if kind is None else (kind,)
    return [e for k in kinds for e in _ZOO.values() if e.kind == k]


def find_entry(name: str) -> ZooEntry | None:
    """The entry called ``name``, or None."""
    return _ZOO.get(name)


def known_names() -> dict[str, list[str]]:
    """Every name by kind (all kinds present, possibly empty): what an :class:`UnknownModel` error lists."""
    return {k: [e.name for e in list_entries(k)] for k in KINDS}


def get_entry(name: str) -> ZooEntry:
    """The entry called ``name``; :class:`napari_xt.errors.UnknownModel` (listing every name by kind) if none."""
    entry = _ZOO.get(name)
    if entry is None:
        raise UnknownModel(name, known_names())
    return entry


def register_imported(name: str, path: str | Path, description: str = "", licence: str = "") -> ZooEntry:
    """Name a released xT checkpoint (``.ckpt``/``.pth``) or a napari-xt ``.safetensors`` you have locally.

    ``load_model(name)`` then loads that file (released ones through the importer). The file is not read here.
    """
    path = Path(path).expanduser().resolve()
    return register_entry(ZooEntry(
        name=name, kind="imported", description=description or f"released xT checkpoint {path.name}",
        config={}, weights=WeightSource("file", str(path)), licence=licence, group="imported"))


# -- demo models -----------------------------------------------------------------------------------------------------
def _shipped_config(file_name: str) -> dict[str, Any]:
    """The XTConfig dict stored in a shipped checkpoint's metadata, read from the safetensors JSON header (no torch);
    {} when the file is missing or unreadable (then loading it reports why)."""
    try:
        with open(DATA_DIR / file_name, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        config = json.loads(header["__metadata__"]["napari_xt_config"])
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return {}
    return config if isinstance(config, dict) else {}


def _demo(name: str, file_name: str, group: str, description: str) -> None:
    config = _shipped_config(file_name)
    register_entry(ZooEntry(
        name=name, kind="demo", description=description, config=config, weights=WeightSource("shipped", file_name),
        licence="BSD-3-Clause", group=group, tags=("demo", *sorted(config.get("heads", {}))),
        native_size=config.get("region_size")))


# Made by scripts/make_demo_models.sh with napari-xt's own trainer on synthetic images: they show how the tool works.
_demo("demo-tissue", "demo_tissue.safetensors", "pathology",
      "DEMO: tissue segmentation (background, stroma, nucleus, gland) trained on synthetic H&E-like tissue, 1 µm/px; "
      "shows how napari-xt works, not for real slides or clinical use")
_demo("demo-sar", "demo_sar.safetensors", "remote sensing",
      "DEMO: water/land/ship segmentation + ship detection trained on a synthetic 2-band (VV/VH dB) SAR scene, "
      "20 m/px; shows how napari-xt works, not an operational detector")


# -- presets (random init) -------------------------------------------------------------------------------------------
def _preset(name: str, description: str, **config: Any) -> None:
    config["name"] = name
    small = config["region_encoder"] == "tiny"
    register_entry(ZooEntry(
        name=name, kind="preset", description=description, config=config, weights=WeightSource("random"),
        group="small" if small else "general",
        tags=("random-init", config["region_encoder"], config["context_encoder"], *sorted(config["heads"])),
        native_size=config["region_size"], mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD)))


_TINY: dict[str, Any] = dict(region_encoder="tiny", region_size=256, sub_region_size=64)
_preset("tiny-hyper-seg", "random weights: tiny encoder + Hyper context, 3-class segmentation (laptop-CPU sized)",
        **_TINY, context_encoder="hyper", heads={"segmentation": {"num_classes": 3}},
        class_names={"segmentation": ["background", "tissue", "tumour"]})
_preset("tiny-hyper-det", "random weights: tiny encoder + Hyper context, 1-class detection",
        **_TINY, context_encoder="hyper", heads={"detection": {"num_classes": 1}})
_preset("tiny-hyper-cls", "random weights: tiny encoder + Hyper context, 2-class image classification",
        **_TINY, context_encoder="hyper", heads={"classification": {"num_classes": 2}})
_preset("tiny-none-seg", "random weights: tiny encoder, no context encoder, 3-class segmentation",
        **_TINY, context_encoder="none", heads={"segmentation": {"num_classes": 3}})
_preset("tiny-xl-seg", "random weights: tiny encoder + Transformer-XL context, 3-class segmentation",
        **_TINY, context_encoder="transformer_xl", heads={"segmentation": {"num_classes": 3}})
_preset("swinv2_tiny-hyper-seg", "random weights: Swin-V2-T encoder + Hyper context, 3-class segmentation, "
        "1024 px regions of 256 px sub-regions (the xT paper's shape; GPU sized)",
        region_encoder="swinv2_tiny", region_size=1024, sub_region_size=256, context_encoder="hyper",
        heads={"segmentation": {"num_classes": 3}})

# Region encoders (kind "encoder") are registered next to their builders, in model/encoders/catalogue.py.

__all__ = [
    "DATA_DIR", "FILE_SUFFIXES", "KINDS", "Kind", "WeightKind", "WeightSource", "ZooEntry", "find_entry",
    "get_entry", "known_names", "list_entries", "register_entry", "register_imported", "unregister_entry",
]
