"""One tiling rule: whole-image ``XTModel.forward`` and the streaming plan + run give the same output.

The image is deliberately not a multiple of the region size, so the last region of each row/column is the flush one
whose overlap with its neighbour is larger than the configured overlap: the case where two tiling rules would have
disagreed (the whole-image path used to pad past the edge while the plan moved the last region back).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_xt.engine.normalise import Normaliser
from napari_xt.engine.plan import make_plan
from napari_xt.engine.run import InferenceRun, RunOptions
from napari_xt.io._array import array_image
from napari_xt.model import XTConfig, build_model
from napari_xt.store import ResultStore, StoreSpec

# Whole-image forward snaps the flush region's start and the cuts between regions to the encoder's finest stride (4
# for "tiny") so stride-4 outputs paste exactly; the plan (align 1) does not. They coincide when the flush offsets
# (168 - 128, 232 - 128) and the overlap midpoints are multiples of 4, as here, while neither side is a multiple of
# the region size (128) or of the stride (128 or 96): every flush region overlaps its neighbour by more than asked.
SHAPE = (168, 232)


def _model(overlap: int) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = XTConfig(region_encoder="tiny", region_size=128, sub_region_size=64, region_overlap=overlap,
                   context_encoder="transformer_xl", context_encoder_kwargs={"hidden": 32, "layers": 1, "heads": 2},
                   heads={"segmentation": {"num_classes": 5}}, pixel_size=None)
    return build_model(cfg).eval()


@pytest.mark.parametrize("overlap", [0, 32])
def test_streaming_plan_and_run_equal_whole_image_forward(overlap, tmp_path):
    model = _model(overlap)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    image = array_image([pixels])

    plan = make_plan(image, region_size=128, overlap=overlap, context="global", use_mask=False)
    grid = model.region_grid(SHAPE)
    assert [r.box for r in plan.regions] == grid.boxes and [r.core for r in plan.regions] == grid.owned_boxes
    assert any(r.box[2] == SHAPE[0] for r in plan.regions) and all(r.box[2] <= SHAPE[0] for r in plan.regions)

    store = ResultStore.create(tmp_path / "s.zarr", StoreSpec(shape=SHAPE, num_classes=5,
                                                              region_count=len(plan.regions)), {})
    run = InferenceRun(model, image, plan, store, RunOptions(device="cpu", batch_size=2))
    assert sum(1 for _ in run) == len(plan.regions)
    streamed = np.asarray(ResultStore.open(tmp_path / "s.zarr").labels[0][:])

    x = torch.from_numpy(Normaliser.from_config(model.config, image)(pixels)).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = model(x)["segmentation"][0].argmax(0).numpy()
    assert streamed.shape == whole.shape == SHAPE and len(np.unique(whole)) > 1
    np.testing.assert_array_equal(streamed, whole)
