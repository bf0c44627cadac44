"""Recipes: how to build one backbone, and the one builder that gives it honest weights.

A :class:`Recipe` is everything needed to build one backbone: the timm architecture, its builder options (JSON-able;
layer classes by name, e.g. ``"mlp_layer": "SwiGLUPacked"``, so they can travel in a checkpoint's config), where its
pretrained weights live (:class:`~napari_xt.model.weights.HubWeights`), its native input size and normalisation, and
whether it is a plain ViT (then it gets the :mod:`.vit_neck` feature pyramid) or a hierarchical backbone (timm
``features_only``). Recipes come from the catalogue (:mod:`.catalogue`, which also answers ``timm:``/``hf-hub:``
specs through :func:`timm_recipe` and :func:`hub_recipe`); this module never reads the catalogue back.

:func:`build_encoder` is the one place a backbone gets weights: ``pretrained`` means a file (``weights=`` given, or
resolved by :func:`napari_xt.model.weights.resolve_weights`), loaded with every key checked (:mod:`.loading`);
nothing resolvable raises :class:`~napari_xt.errors.WeightsUnavailable`. Options reserved for napari-xt (never passed
to timm): ``blocks`` (ViT blocks feeding the pyramid), ``weights`` (a local file), ``arch``/``model_args`` (an
``hf-hub:`` spec's architecture, pinned into the checkpoint so a trained model rebuilds without the network),
``img_size`` (the sub-region size) and ``sub_batch`` (sub-regions per backbone call; read by ``XTModel``, it bounds
memory and never changes features).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import CheckpointError, WeightsUnavailable
from ..config import ConfigError
from ..weights import HUB_FILES, HubWeights, PackageWeights, cached_file, download, hub_offline
from .base import RegionEncoder

#: Prefixes of encoder specs that name a backbone outside the catalogue (``hf_hub:`` is timm's older spelling).
SPEC_PREFIXES = ("timm:", "hf-hub:", "hf_hub:")
#: timm modules whose models are plain ViTs (one token grid): they get the simple feature pyramid.
PLAIN_VIT_MODULES = ("timm.models.vision_transformer", "timm.models.eva", "timm.models.deit")
#: Options napari-xt reads itself; everything else goes to ``timm.create_model``.
OWN_OPTIONS = ("blocks", "weights", "arch", "model_args", "img_size", "sub_batch")
#: ``features_only`` options (which stages to return): not options of the full model the weights are checked on.
_FEATURE_OPTIONS = ("out_indices", "feature_cls", "flatten_sequential")
#: Layer classes by the names a config may use (model cards pass the classes themselves).
_LAYERS = {"SwiGLUPacked": ("timm.layers", "SwiGLUPacked"), "SwiGLU": ("timm.layers", "SwiGLU"),
           "Mlp": ("timm.layers", "Mlp"), "GluMlp": ("timm.layers", "GluMlp"),
           "SiLU": ("torch.nn", "SiLU"), "GELU": ("torch.nn", "GELU")}


@dataclass(frozen=True)
class Recipe:
    """How to build one backbone (see the module docstring)."""

    name: str
    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    hub: HubWeights | PackageWeights | None = None  # where the pretrained weights live
    native_size: int | None = None
    plain_vit: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    download_name: str = ""

    def call(self) -> str:
        """The exact timm call this recipe makes (docs, ``napari-xt models``)."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"timm.create_model({self.arch!r}{', ' + args if args else ''})"


def is_spec(name: str) -> bool:
    """True for ``timm:``/``hf-hub:`` specs."""
    return name.startswith(SPEC_PREFIXES)


def is_plain_vit(arch: str) -> bool:
    """True when timm's ``arch`` is a plain ViT (token grid, no multi-scale maps)."""
    import timm

    base = arch.split(".")[0]
    if not timm.is_model(base):
        raise ConfigError(f"timm has no model {base!r} (see timm.list_models())")
    module = timm.models.model_entrypoint(base).__module__
    return module in PLAIN_VIT_MODULES


def timm_recipe(name: str, model_name: str, kwargs: dict[str, Any] | None = None) -> Recipe:
    """Recipe for any timm model; its pretrained weights are the hub copy its pretrained config names."""
    import timm

    plain = is_plain_vit(model_name)
    cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=True)
    hub = None
    native = None
    mean = std = None
    if cfg is not None:
        native = int(cfg.input_size[-1]) if cfg.input_size else None
        mean, std = tuple(cfg.mean), tuple(cfg.std)
        if cfg.hf_hub_id:
            fname = getattr(cfg, "hf_hub_filename", None)
            files: tuple[str, ...] = (str(fname),) if fname else HUB_FILES
            hub = HubWeights(cfg.hf_hub_id.split("@")[0], files=files, names=(name, model_name))
    return Recipe(name=name, arch=model_name, kwargs=dict(kwargs or {}), hub=hub, native_size=native,
                  plain_vit=plain, mean=mean, std=std, download_name=name)


def hub_recipe(name: str, repo: str, options: dict[str, Any]) -> Recipe:
    """Recipe for ``hf-hub:org/repo``: the architecture from ``options`` (pinned) or the repo's timm ``config.json``."""
    if "arch" in options:
        pre: dict[str, Any] = {}
        arch, model_args = str(options["arch"]), dict(options.get("model_args", {}))
    else:
        config = read_hub_config(name, repo)
        arch, model_args = str(config["architecture"]), dict(config.get("model_args", {}))
        pre = config.get("pretrained_cfg", {}) or {}
    mean = tuple(pre["mean"]) if "mean" in pre else None
    std = tuple(pre["std"]) if "std" in pre else None
    size = pre.get("input_size")
    return Recipe(name=name, arch=arch, kwargs=model_args, hub=HubWeights(repo), plain_vit=is_plain_vit(arch),
                  native_size=int(size[-1]) if size else model_args.get("img_size"), mean=mean, std=std,
                  download_name=name)


def read_hub_config(name: str, repo: str) -> dict[str, Any]:
    """A hub repo's timm ``config.json`` (cache first, then the hub unless offline)."""
    path = cached_file(repo, ("config.json",))
    if path is None:
        hub = HubWeights(repo, files=("config.json",))
        fix = f"run `napari-xt download {name}` where the hub is reachable"
        if hub_offline():
            raise WeightsUnavailable(name, "offline", fix, "its config.json is not cached and HF_HUB_OFFLINE is set")
        path = download(name, hub)
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable timm config.json ({err})", path) from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise CheckpointError(f"{repo}: config.json names no timm 'architecture'; not a timm model", path)
    return config


def _materialise(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Layer names -> classes for ``mlp_layer``/``act_layer``/``norm_layer`` (configs hold names, timm wants types)."""
    import importlib

    out = dict(kwargs)
    for key in ("mlp_layer", "act_layer"):
        value = out.get(key)
        if isinstance(value, str) and value in _LAYERS:
            module, attr = _LAYERS[value]
            out[key] = getattr(importlib.import_module(module), attr)
    return out


def build_encoder(recipe: Recipe, in_chans: int = 3, pretrained: bool = False, img_size: int | None = None,
                  weights: str | None = None, blocks: int | list[int] = 1, **extra: Any) -> RegionEncoder:
    """Build ``recipe`` for ``in_chans`` channels and sub-regions of ``img_size`` px.

    ``pretrained`` loads ``weights`` (a local file) or the resolved hub/folder file, every key checked; with no way to
    get them it raises :class:`WeightsUnavailable`. ``extra`` options go to ``timm.create_model``.
    """
    import timm

    from .loading import load_vit_weights
    from .vit_neck import ViTRegionEncoder, check_sub_region

    if "model_img_size" in extra:  # position tables sized to the sub-region (Swin, Hiera): timm's img_size
        extra["img_size"] = extra.pop("model_img_size")
    kwargs = _materialise({**recipe.kwargs, **extra})
    path = _weights_path(recipe, weights) if pretrained else None
    if recipe.plain_vit:
        kwargs.setdefault("num_classes", 0)
        kwargs.setdefault("dynamic_img_size", True)
        vit = timm.create_model(recipe.arch, pretrained=False, in_chans=in_chans, **kwargs)
        enc = ViTRegionEncoder(vit, recipe.name, blocks=blocks, native_size=recipe.native_size)
        if img_size is not None:
            check_sub_region(recipe.name, enc.patch, int(img_size))
        if path is not None:
            load_vit_weights(vit, path, recipe.name)
        return enc
    return _hierarchical(recipe, in_chans, img_size, path, kwargs)


def _weights_path(recipe: Recipe, weights: str | None) -> Path:
    from ..weights import resolve_weights

    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"--encoder-weights {path}: no such file", path)
        return path
    if recipe.hub is None:
        raise WeightsUnavailable(recipe.name, "none",
                                 "pass --encoder-weights FILE, or --random-init for random weights")
    return resolve_weights(recipe.name, recipe.hub, recipe.download_name or recipe.name)


def _hierarchical(recipe: Recipe, in_chans: int, img_size: int | None, path: Path | None,
                  kwargs: dict[str, Any]) -> RegionEncoder:
    """A multi-scale timm backbone (``features_only``), its weights loaded from ``path`` (strictly)."""
    import timm

    if img_size is not None and img_size % 32:
        raise ConfigError(f"{recipe.name}: sub-region size must be a multiple of 32, got {img_size}")
    if path is not None:
        # timm loads features_only models non-strictly: check every key against the full model first
        from .loading import checked_state

        full_kwargs = {k: v for k, v in kwargs.items() if k not in _FEATURE_OPTIONS}
        full = timm.create_model(recipe.arch, pretrained=False, num_classes=0, in_chans=in_chans, **full_kwargs)
        state = checked_state(full, path, recipe.name)
        del full
        direct = _features_from_state(recipe, in_chans, kwargs, state)
        if direct is not None:
            return direct
        overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})  # e.g. the file's channel count (input_size)
        kwargs = {**kwargs, "pretrained_cfg_overlay": {**overlay, "file": str(path)}}
    try:
        model = timm.create_model(recipe.arch, features_only=True, pretrained=path is not None, in_chans=in_chans,
                                  **kwargs)
    except RuntimeError as err:  # strict load_state_dict: missing/unexpected keys, size mismatches
        lines = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise CheckpointError(f"{path} does not match {recipe.name}: {lines}", path) from None
    return _wrap(recipe, model)


def _features_from_state(recipe: Recipe, in_chans: int, kwargs: dict[str, Any],
                         state: dict[str, Any]) -> RegionEncoder | None:
    """The ``features_only`` backbone loaded from the converted and checked ``state`` when its keys are the full
    model's (EfficientNet, ResNet, ConvNeXt): a file in another layout (efficientnet-pytorch) can only load this
    way, since timm's own loader reads the file as it is. None when the feature model renames its modules."""
    import timm

    model = timm.create_model(recipe.arch, features_only=True, pretrained=False, in_chans=in_chans, **kwargs)
    own = model.state_dict()
    if any(k not in state or tuple(state[k].shape) != tuple(v.shape) for k, v in own.items()):
        return None
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return _wrap(recipe, model)


def _wrap(recipe: Recipe, model: Any) -> RegionEncoder:
    from typing import cast

    info = cast(Any, model).feature_info
    fmt = str(getattr(model, "output_fmt", "NCHW"))
    return RegionEncoder(model, info.channels(), info.reduction(), channels_last=fmt.endswith("NHWC"),
                         native_size=recipe.native_size, size_multiple=32, name=recipe.name)


def with_name(recipe: Recipe, name: str) -> Recipe:
    return replace(recipe, name=name, download_name=name)


__all__ = [
    "OWN_OPTIONS", "PLAIN_VIT_MODULES", "SPEC_PREFIXES", "Recipe", "build_encoder", "hub_recipe", "is_plain_vit",
    "is_spec", "read_hub_config", "timm_recipe", "with_name",
]
