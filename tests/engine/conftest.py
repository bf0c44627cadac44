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


@pytest.fixture
def oom_above_one(monkeypatch):
    """``oom_above_one(run)``: the run's region encoder raises CUDA's out-of-memory error for any batch of more than
    one region (as a GPU too small for the batch would); returns the list of batch sizes it was asked for."""

    def install(run) -> list[int]:
        real, sizes = run.model.encode_regions, []

        def flaky(x):
            sizes.append(x.shape[0])
            if x.shape[0] > 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return real(x)

        monkeypatch.setattr(run.model, "encode_regions", flaky)
        return sizes

    return install
