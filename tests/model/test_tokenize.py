"""Nested tokenization round trips: cut then stitch/paste gives back exactly the pixels / feature maps."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from napari_xt.model.tokenize import (
    RegionGrid,
    crop_to_image,
    cut_regions,
    cut_sub_regions,
    pad_to,
    paste_regions,
    stitch_feature_maps,
    token_positions,
)

SHAPES = [(150, 217), (64, 64), (1, 300), (37, 5), (200, 129)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size,overlap,align", [(64, 0, 1), (64, 16, 1), (32, 8, 1), (48, 2, 1), (64, 16, 16),
                                                (64, 0, 32)])
def test_owned_boxes_tile_the_image_exactly(shape, size, overlap, align):
    grid = RegionGrid(shape, size, overlap, align)
    count = torch.zeros(shape, dtype=torch.int32)
    for (y0, x0, y1, x1), box in zip(grid.owned_boxes, grid.boxes):
        assert box[0] <= y0 < y1 <= box[2] and box[1] <= x0 < x1 <= box[3]  # owned part lies in the tile
        count[y0:y1, x0:x1] += 1
    assert bool((count == 1).all())
    assert grid.padded_shape[0] >= shape[0] and grid.padded_shape[1] >= shape[1]
    assert len(grid.boxes) == grid.rows * grid.cols == len(grid)
    assert grid.rows == max(1, math.ceil(max(shape[0] - size, 0) / (size - overlap)) + 1)


def test_grid_numbers():
    grid = RegionGrid((150, 217), 64, 16)
    assert grid.stride == 48 and (grid.rows, grid.cols) == (3, 5)
    assert grid.y_starts == [0, 48, 86] and grid.x_starts == [0, 48, 96, 144, 153]  # last tile flush with the edge
    assert grid.padded_shape == (150, 217)  # no padding: the image is larger than a tile
    assert grid.boxes[1] == (0, 48, 64, 112)
    assert grid.owned_boxes[0] == (0, 0, 56, 56) and grid.owned_boxes[1] == (0, 56, 56, 104)
    assert grid.owned_boxes[4] == (0, (144 + 64 + 153) // 2, 56, 217)  # the flush tile's bigger overlap split mid-way
    assert grid.row_col(6) == (1, 1)
    with pytest.raises(ValueError):
        RegionGrid((10, 10), 16, 16)
    with pytest.raises(ValueError, match="multiple of align"):
        RegionGrid((100, 100), 64, 16, align=32)


def test_aligned_grid_snaps_the_last_tile_and_the_cuts():
    grid = RegionGrid((150, 217), 64, 16, align=8)
    assert grid.y_starts == [0, 48, 88] and grid.x_starts == [0, 48, 96, 144, 160]
    assert grid.padded_shape == (152, 224)  # the snapped last tile reaches < align px past the edge
    cuts = {v for box in grid.owned_boxes for v in box} - {150, 217}
    assert all(v % 8 == 0 for v in cuts)


def test_the_grid_is_the_streaming_plans():
    """One tiling rule: RegionGrid (whole-image forward) and make_plan (streaming) give the same boxes and cores."""
    from types import SimpleNamespace

    import numpy as np

    from napari_xt.engine.plan import make_plan

    for shape, size, overlap in [((150, 217), 64, 16), ((300, 129), 128, 0), ((50, 40), 64, 0), ((517, 999), 96, 32)]:
        image = SimpleNamespace(levels=[np.zeros((*shape, 3), np.uint8)], downsamples=[1.0], pixel_size=None)
        plan = make_plan(image, region_size=size, overlap=overlap, context="global", use_mask=False)
        grid = RegionGrid(shape, size, overlap)
        assert [r.box for r in plan.regions] == grid.boxes
        assert [r.core for r in plan.regions] == grid.owned_boxes
        assert [(r.row, r.col) for r in plan.regions] == [grid.row_col(i) for i in range(len(grid))]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("overlap", [0, 8])
@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_cut_then_paste_is_identity_on_pixels(shape, overlap, mode):
    img = torch.randn(2, 3, *shape)
    grid = RegionGrid(shape, 32, overlap)
    regions = cut_regions(img, grid, mode)
    assert regions.shape == (2, len(grid), 3, 32, 32)
    assert torch.equal(paste_regions(regions, grid), img)


@pytest.mark.parametrize("shape, align", [((50, 70), 1), ((50, 70), 16), ((20, 70), 1)])
def test_regions_hold_the_right_pixels_and_padding(shape, align):
    img = torch.arange(shape[0] * shape[1], dtype=torch.float32).reshape(1, 1, *shape)
    grid = RegionGrid(shape, 32, 0, align)
    regions = cut_regions(img, grid, "constant", value=-1.0)
    for i, (y0, x0, y1, x1) in enumerate(grid.boxes):
        vy, vx = min(y1, shape[0]) - y0, min(x1, shape[1]) - x0
        assert torch.equal(regions[0, i, 0, :vy, :vx], img[0, 0, y0 : y0 + vy, x0 : x0 + vx])
        assert bool((regions[0, i, 0, vy:, :] == -1).all()) and bool((regions[0, i, 0, :, vx:] == -1).all())


def test_reflect_padding_larger_than_the_image():
    img = torch.randn(2, 5, 3)
    out = pad_to(img, (64, 64), "reflect")
    assert out.shape == (2, 64, 64) and torch.equal(out[:, :5, :3], img)
    small = torch.randn(1, 1, 10, 10)
    assert torch.equal(pad_to(small, (15, 12)), F.pad(small, (0, 2, 0, 5), mode="reflect"))
    one = pad_to(torch.ones(1, 1, 1, 4), (8, 9))
    assert bool((one == 1).all())
    with pytest.raises(ValueError):
        pad_to(img, (2, 2))


@pytest.mark.parametrize("region_px", [(128, 128), (100, 76)])
@pytest.mark.parametrize("overlap", [0, 16, 32])
def test_sub_regions_stitch_back_to_pixels(region_px, overlap):
    regions = torch.randn(3, 2, *region_px)
    tiles, layout = cut_sub_regions(regions, 64, overlap)
    assert tiles.shape == (3 * len(layout), 2, 64, 64)
    assert torch.equal(stitch_feature_maps(tiles, layout), regions)


@pytest.mark.parametrize("region_px", [(256, 256), (160, 224)])
@pytest.mark.parametrize("overlap", [0, 64])
def test_sub_regions_stitch_constant_stride_feature_maps(region_px, overlap):
    """A stride-f feature extractor run per sub-region then stitched == run on the whole (padded) region."""
    regions = torch.randn(2, 3, *region_px)
    tiles, layout = cut_sub_regions(regions, 128, overlap, align=32)
    strides = [4, 8, 16, 32]
    per_tile = [F.avg_pool2d(tiles, f) for f in strides]
    stitched = stitch_feature_maps(per_tile, layout)
    padded = pad_to(regions, layout.padded_shape)
    for f, m in zip(strides, stitched):
        whole = F.avg_pool2d(padded, f)[..., : -(-region_px[0] // f), : -(-region_px[1] // f)]
        assert m.shape == whole.shape
        torch.testing.assert_close(m, whole)


def test_misaligned_overlap_is_reported():
    tiles, layout = cut_sub_regions(torch.randn(1, 1, 128, 128), 64, 8)
    with pytest.raises(ValueError, match="multiple of the feature stride"):
        stitch_feature_maps(F.avg_pool2d(tiles, 32), layout)


def test_crop_to_image_at_a_coarser_stride():
    grid = RegionGrid((150, 217), 64, 16, align=4)
    out = torch.randn(len(grid), 2, 16, 16)  # stride-4 outputs per region
    crop, (y0, x0, y1, x1) = crop_to_image(out[7], grid, 7)
    oy0, ox0, oy1, ox1 = grid.owned_boxes[7]
    assert (y0, x0) == (oy0 // 4, ox0 // 4) and (y1, x1) == (-(-oy1 // 4), -(-ox1 // 4))
    assert crop.shape[-2:] == (y1 - y0, x1 - x0)
    canvas = paste_regions(out[None], grid)
    assert canvas.shape == (1, 2, 38, 55)


def test_token_positions():
    pos = token_positions((2, 3), [(0, 0), (0, 1), (1, 0)])
    assert pos.shape == (18, 2) and pos.dtype == torch.long
    assert pos[:6].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    assert pos[6].tolist() == [0, 3] and pos[12].tolist() == [2, 0] and pos[-1].tolist() == [3, 2]
    assert token_positions((2, 2), []).shape == (0, 2)
