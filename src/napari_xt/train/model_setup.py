"""Which model to fine-tune: a base checkpoint (ours, a released xT one, a preset) or a fresh architecture, with
heads sized for the user's classes.

A base's region encoder and context encoder weights are kept; a head is kept only when its task and class count
match the annotations, otherwise a fresh head replaces it (a 284-class classifier cannot be half-reused for 3
classes). Heads for tasks the user did not annotate are dropped: a saved model must not claim outputs nobody trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model import XTConfig, build_model, load_model
from ..model.encoders import catalogue as encoder_facts
from ..model.encoders.recipe import is_spec
from ..model.weights import PackageWeights
from ..model.xt import XTModel
from ..palette import default_colors
from .options import LARGE_ENCODER_PARAMS

__all__ = ["LARGE_ENCODER_PARAMS", "data_statistics", "default_colors", "default_freeze",
           "encoder_parameters", "make_model", "resolve_freeze"]  # default_colors: the project palette, for loop.py

#: Builder options that only change memory use; the only ones a ``--base`` model may be given.
_MEMORY_OPTIONS = ("sub_batch",)


def encoder_parameters(model: XTModel) -> int:
    """Parameters of the region encoder's backbone (``region_encoder.model``; a ViT's pyramid neck not counted)."""
    return sum(p.numel() for p in model.region_encoder.model.parameters())


def default_freeze(model: XTModel) -> bool:
    """Whether fine-tuning freezes ``model``'s region encoder when nobody said: yes for large encoders
    (:data:`LARGE_ENCODER_PARAMS`)."""
    return encoder_parameters(model) >= LARGE_ENCODER_PARAMS


def resolve_freeze(model: XTModel, options: Any) -> str | None:
    """Settle ``options.freeze_encoder`` when it is None (nobody said): frozen for large encoders, so the CLI and
    the Fine-tune tab fine-tune a foundation model the same way. Returns the note to show the user when the default
    froze it (they should know why the encoder does not learn), else None."""
    if options.freeze_encoder is not None:
        return None
    options.freeze_encoder = default_freeze(model)
    if not options.freeze_encoder:
        return None
    n = encoder_parameters(model) / 1e6
    return (f"region encoder {model.config.region_encoder} ({n:.0f} M parameters) is kept frozen (a large encoder "
            "overfits a few annotated regions; `napari-xt train --train-encoder` fine-tunes it too)")


def data_statistics(image, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of a coarse level (NaN/nodata ignored): normalisation for non-RGB data such as SAR dB."""
    level = image.levels[-1]
    step = max(1, int(max(level.shape[:2]) // 512))
    sample = np.asarray(level[::step, ::step]).astype(np.float64)[..., :channels]
    flat = sample.reshape(-1, sample.shape[-1])
    flat = flat[np.all(np.isfinite(flat), axis=1)]
    if flat.size == 0:
        return [0.0] * channels, [1.0] * channels
    if np.dtype(level.dtype) == np.uint8:
        flat = flat / 255.0
    elif np.dtype(level.dtype) == np.uint16:
        flat = flat / 65535.0
    std = np.maximum(flat.std(0), 1e-3)
    return [float(v) for v in flat.mean(0)], [float(v) for v in std]


def make_model(tasks: dict[str, dict], class_names: dict[str, list[str]], class_colors: dict[str, list[list[int]]],
               *, base: str | None, region_encoder: str, context_encoder: str, region_size: int | None,
               sub_region_size: int | None, first_image, pretrained: bool = False, context_kwargs: dict | None = None,
               encoder_weights: str | None = None, encoder_options: dict[str, Any] | None = None):
    """Build the model to train and its config. ``tasks`` maps head name -> head options (with num_classes).

    A fresh model's region encoder is a catalogue name or a ``timm:``/``hf-hub:`` spec; ``pretrained`` loads its
    checked weights (``encoder_weights`` FILE, else weights folder / hub cache; ``WeightsUnavailable`` otherwise).
    An encoder that has pretrained weights but is built without them is labelled "random-init" in the description.
    ``encoder_options`` go to the encoder's builder and into
    ``region_encoder_kwargs``; a ``base`` keeps its own encoder and takes only memory options (``sub_batch``).
    """
    options = dict(encoder_options or {})
    for key in ("pretrained", "weights"):
        if key in options:
            raise ValueError(f"encoder option {key!r} is not an option: use --encoder-weights FILE or --random-init")
    if base:
        other = sorted(set(options) - set(_MEMORY_OPTIONS))
        if other:
            raise ValueError(f"encoder options {', '.join(other)} apply to a fresh model; --base keeps its own encoder")
        model = load_model(base)
        cfg = model.config
        heads = {}
        for name, opts in tasks.items():
            old = cfg.heads.get(name)
            same = old is not None and old.get("type", name) == opts.get("type", name) and \
                int(old.get("num_classes", -1)) == int(opts["num_classes"])
            heads[name] = dict(old) if same and old is not None else dict(opts)
        new_cfg = cfg.replace(heads=heads, class_names=class_names, class_colors=class_colors,
                              region_encoder_kwargs={**cfg.region_encoder_kwargs, **options})
        if region_size:
            new_cfg = new_cfg.replace(region_size=int(region_size))
        new = build_model(new_cfg, pretrained=False)
        state = model.state_dict()
        target = new.state_dict()
        keep = {k: v for k, v in state.items() if k in target and target[k].shape == v.shape}
        new.load_state_dict(keep, strict=False)
        return new
    channels = int(first_image.levels[0].shape[-1])
    if channels == 4 and np.dtype(first_image.levels[0].dtype) == np.uint8:
        channels = 3  # RGBA slides: the model sees RGB, as the engine's normaliser does
    mean = std = None
    if np.dtype(first_image.levels[0].dtype).kind == "f" or channels not in (1, 3):
        mean, std = data_statistics(first_image, channels)
    elif channels == 3 and (norm := encoder_facts.normalisation(region_encoder)) is not None:
        mean, std = list(norm[0]), list(norm[1])  # the encoder's own normalisation (H-optimus, Lunit)
    region = int(region_size or 256)
    sub = int(sub_region_size or encoder_facts.suggest_sub_region(region_encoder, region))
    pretrained = bool(pretrained or encoder_weights)
    pinned = pretrained or is_spec(region_encoder)
    enc_kwargs = encoder_facts.pin_options(region_encoder, options) if pinned else dict(options)
    if encoder_weights:
        enc_kwargs["weights"] = str(encoder_weights)
    cfg = XTConfig(region_encoder=region_encoder, region_encoder_kwargs=enc_kwargs, region_size=region,
                   sub_region_size=sub, context_encoder=context_encoder,
                   context_encoder_kwargs=dict(context_kwargs or {}),
                   heads={k: dict(v) for k, v in tasks.items()}, class_names=class_names, class_colors=class_colors,
                   in_chans=channels, mean=mean, std=std, input_kind=getattr(first_image, "kind", "brightfield"))
    model = build_model(cfg, pretrained=pretrained)
    model.config.region_encoder_kwargs.pop("weights", None)  # a local path: used once, never stored
    if encoder_weights:
        model.config.description = f"{region_encoder} region encoder from {Path(encoder_weights).name}"
    elif not pretrained and encoder_facts.has_pretrained(region_encoder):
        model.config.description = f"random-init {region_encoder} region encoder (not pretrained)"
    elif pretrained and isinstance(source := encoder_facts.weights_source(region_encoder), PackageWeights):
        model.config.description = (f"{region_encoder} region encoder with pretrained weights from the installed "
                                    f"package {source.distribution}")
    return model


def has_trainable_neck(model: torch.nn.Module) -> bool:
    """A plain-ViT encoder's feature pyramid (``region_encoder.neck``) starts random: it trains even when frozen."""
    return isinstance(getattr(model.region_encoder, "neck", None), torch.nn.Module)


def frozen_by_freezing(name: str) -> bool:
    """Parameters a frozen encoder keeps: the backbone's, not the pyramid neck built on top of it."""
    return name.startswith("region_encoder.") and not name.startswith("region_encoder.neck.")
