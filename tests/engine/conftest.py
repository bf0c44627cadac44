"""Engine test fixtures: one small random-init segmentation checkpoint shared by the CLI and resume tests."""

import pytest
import torch

from napari_xt.model import XTConfig, build_model, save_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="transformer_xl",
                   context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2},
                   heads={"segmentation": {"num_classes": 4}})
    path = tmp_path_factory.mktemp("m") / "seg.safetensors"
    save_model(build_model(cfg), path)
    return path
