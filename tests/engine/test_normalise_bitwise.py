"""Normaliser.batch (torch, in place) gives __call__'s float32 values bit for bit for every byte value (issue 14)."""

import numpy as np
import pytest
import torch

from napari_xt.engine.normalise import Normaliser


@pytest.mark.parametrize("width", [1, 7, 16, 67, 512])
@pytest.mark.parametrize("stats", [((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                                   ((0.7, 0.1, 0.33), (0.11, 0.9, 0.07))])
def test_every_byte_value_at_every_position(width, stats):
    mean, std = (np.asarray(v, np.float32) for v in stats)
    norm = Normaliser(mean, std, 255.0, 3)
    # every value at positions both in a SIMD body and in a scalar tail, in every channel
    values = (np.arange(256 * width * 3, dtype=np.int64) * 7 % 256).astype(np.uint8).reshape(256, width, 3)
    pixels = [values, np.roll(values, 1, axis=0)]
    want = torch.from_numpy(np.stack([norm(p) for p in pixels])).permute(0, 3, 1, 2).contiguous()
    got = norm.batch(pixels)
    assert got.is_contiguous() and got.dtype == torch.float32
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert torch.equal(norm.batch(pixels, channels_last=True).view(torch.int32), want.view(torch.int32))


def test_full_first_batch_matches_the_one_thread_path(tissue_ome_tiff, tmp_path):
    """``InferenceRun.quick_first = False`` (a full first batch) on the staged pipeline and on the one-thread path:
    the same store bit for bit, every region done."""
    from napari_xt.app.driver import prepare
    from napari_xt.app.request import make_request
    from napari_xt.model import XTConfig, build_model, save_model
    from napari_xt.store import ResultStore

    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="hyper",
                   heads={"segmentation": {"num_classes": 4}})
    model = tmp_path / "m.safetensors"
    save_model(build_model(cfg), model)
    labels = []
    for name, pipeline in (("ref", False), ("staged", True)):
        req = make_request(str(tissue_ome_tiff), str(model), str(tmp_path / f"{name}.zarr"), device="cpu",
                           use_mask=False, level=1, window_size=2, batch_size=4)
        run = prepare(req).run
        run.pipeline, run.quick_first = pipeline, False
        assert len(list(run)) == run.n_total == run.n_done
        labels.append([np.asarray(a[:]) for a in ResultStore.open(tmp_path / f"{name}.zarr").labels])
    assert all(np.array_equal(a, b) for a, b in zip(*labels)) and len(labels[0]) == len(labels[1])
