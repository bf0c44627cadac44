"""``XTConfig``: everything needed to rebuild an xT model, stored as JSON inside every checkpoint.

A checkpoint must be self-describing (the engine, the dock and ``load_model`` rebuild the network from it alone), so
the config holds the architecture (region/context encoder names and options, heads), the tokenisation geometry
(region and sub-region sizes, overlaps, padding) and what the user needs to interpret outputs (class names/colours,
normalisation, pixel size, input kind). It is a plain dataclass that round-trips through ``to_dict``/``from_dict``;
unknown keys raise instead of being dropped, so a typo in a hand-written config never silently changes a model.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
PAD_MODES = ("reflect", "constant")


class ConfigError(ValueError):
    """An XTConfig that cannot describe a valid model; the message names the offending field."""


@dataclass
class XTConfig:
    """Architecture + geometry + metadata of one xT model (see docs/model.md for every field)."""

    region_encoder: str = "tiny"
    region_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    region_size: int = 1024
    sub_region_size: int = 256
    overlap: int = 0  # sub-region overlap inside a region, px
    region_overlap: int = 0  # overlap between neighbouring regions, px
    pad_mode: str = "reflect"
    context_encoder: str = "hyper"
    context_encoder_kwargs: dict[str, Any] = field(default_factory=dict)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    class_names: dict[str, list[str]] = field(default_factory=dict)
    class_colors: dict[str, list[list[int]]] = field(default_factory=dict)
    in_chans: int = 3
    mean: list[float] | None = None  # None -> ImageNet for 3 channels, 0.5 otherwise
    std: list[float] | None = None
    pixel_size: float | None = None  # pixel_unit per px at the analysis level
    pixel_unit: str | None = None  # "um" | "m"; None (older checkpoints): m for SAR models, µm otherwise
    input_kind: str = "brightfield"
    #: detection: the score threshold that gave the best validation F1 when the model was trained (``predict`` and the
    #: dock use it unless the user sets one); None: untrained or not a detector (then 0.3)
    score_threshold: float | None = None
    name: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        # Fill normalisation defaults that depend on the channel count, so a 1- or 5-channel config is valid as is.
        if self.mean is None:
            self.mean = list(IMAGENET_MEAN) if self.in_chans == 3 else [0.5] * int(self.in_chans)
        if self.std is None:
            self.std = list(IMAGENET_STD) if self.in_chans == 3 else [0.5] * int(self.in_chans)
        self.mean = [float(v) for v in self.mean]
        self.std = [float(v) for v in self.std]
        self.validate()

    # -- checks ------------------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``ConfigError`` for geometry or metadata that no model could honour."""

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(msg)

        for key in ("region_size", "sub_region_size", "in_chans"):
            need(isinstance(getattr(self, key), int) and getattr(self, key) > 0, f"{key} must be a positive int")
        need(0 <= self.overlap < self.sub_region_size, "overlap must be in [0, sub_region_size)")
        need(0 <= self.region_overlap < self.region_size, "region_overlap must be in [0, region_size)")
        need(self.sub_region_size <= self.region_size, "sub_region_size must be <= region_size")
        need(self.pad_mode in PAD_MODES, f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        mean, std = self.mean or [], self.std or []  # filled in by __post_init__
        need(len(mean) == self.in_chans and len(std) == self.in_chans,
             f"mean/std need {self.in_chans} values (in_chans), got {len(mean)}/{len(std)}")
        need(all(s > 0 for s in std), "std values must be > 0")
        need(self.pixel_size is None or self.pixel_size > 0, "pixel_size must be > 0 or None")
        need(self.pixel_unit in (None, "um", "m"), f"pixel_unit must be 'um', 'm' or None, not {self.pixel_unit!r}")
        need(self.score_threshold is None or 0.0 <= self.score_threshold <= 1.0, "score_threshold must be in [0, 1]")
        need(isinstance(self.heads, dict) and all(isinstance(v, dict) for v in self.heads.values()),
             "heads must map head name -> dict of options")
        for head, names in self.class_names.items():
            k = self.heads.get(head, {}).get("num_classes")
            need(k is None or len(names) == k, f"class_names[{head!r}] has {len(names)} names, head has {k} classes")
        for head, colors in self.class_colors.items():
            need(all(len(c) in (3, 4) for c in colors), f"class_colors[{head!r}] entries must be RGB or RGBA")

    # -- (de)serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A deep, JSON-ready copy (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> XTConfig:
        """Build from ``to_dict`` output; unknown keys raise ``ConfigError`` listing the known ones."""
        if not isinstance(data, dict):
            raise ConfigError(f"config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown XTConfig key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**copy.deepcopy(data))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> XTConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"config is not valid JSON: {err}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> XTConfig:
        """A validated copy with some fields changed."""
        return self.from_dict({**self.to_dict(), **changes})
