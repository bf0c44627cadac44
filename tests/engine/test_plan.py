from types import SimpleNamespace

import numpy as np
import pytest

from napari_xt.engine.plan import PlanError, choose_level, make_plan
from napari_xt.synthetic import SarSample, TissueSample


def as_image(sample, kind):
    return SimpleNamespace(
        levels=sample.levels,
        downsamples=[float(d) for d in sample.spec.downsamples],
        pixel_size=(sample.pixel_size, sample.pixel_size),
        kind=kind,
        nodata=None,
    )


@pytest.fixture(scope="module")
def tissue():
    return as_image(TissueSample(4096, 6000, seed=4), "brightfield")


def test_cores_tile_the_image_exactly_once(tissue):
    plan = make_plan(tissue, region_size=1000, overlap=120, use_mask=False)
    cover = np.zeros(plan.analysis_shape, dtype=np.int32)
    for r in plan.regions:
        y0, x0, y1, x1 = r.core
        assert r.box[0] <= y0 and y1 <= r.box[2] and r.box[1] <= x0 and x1 <= r.box[3]
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    assert plan.n_planned == len(plan.regions)


def test_mask_skips_glass_regions(tissue):
    plan = make_plan(tissue, region_size=512, use_mask=True)
    assert plan.skipped, "the synthetic slide has glass-only regions"
    labels = TissueSample(4096, 6000, seed=4).label_levels[3].compute()  # 8x down
    for rid in plan.skipped:
        y0, x0, y1, x1 = (v // 8 for v in plan.regions[rid].core)
        assert (labels[y0:y1, x0:x1] > 0).mean() < 0.02
    assert plan.n_planned + len(plan.skipped) == len(plan.regions)


def test_sar_mask_skips_nodata():
    sar = as_image(SarSample(4096, 4096), "sar")
    plan = make_plan(sar, region_size=256)
    corner = [r for r in plan.regions if r.core[0] >= 3840 and r.core[1] >= 3840]
    assert corner and all(r.id in plan.skipped for r in corner)


def test_target_pixel_size_picks_level_and_scale(tissue):
    assert choose_level([1, 2, 4, 8], 0.5, 1.0, None) == (1, 1.0)
    lvl, scale = choose_level([1, 2, 4, 8], 0.25, 1.5, None)
    assert lvl == 2 and scale == pytest.approx(1.5)
    plan = make_plan(tissue, region_size=512, target_pixel_size=2.0, use_mask=False)
    assert plan.level == 2 and plan.analysis_shape == (1024, 1500)
    assert plan.downsample_to_level0 == pytest.approx(4.0)
    with pytest.raises(PlanError, match="out of range"):
        make_plan(tissue, level=12)


def test_windows_and_nearest_order(tissue):
    plan = make_plan(tissue, region_size=512, context="window", window_size=2, use_mask=False)
    assert all(len(w) <= 4 for w in plan.windows)
    assert sorted(i for w in plan.windows for i in w) == list(range(len(plan.regions)))
    assert plan.run_order == tuple(range(len(plan.windows)))  # row-major, no focus: window ids in order
    assert all(plan.regions[i].window == w for w, ids in enumerate(plan.windows) for i in ids)  # keyed by id
    windows, checksum = plan.windows, plan.checksum()
    order = plan.order_near((4000.0, 5900.0))  # bottom-right corner first
    assert sorted(order) == list(plan.run_order)
    first = [plan.regions[i] for i in plan.windows[order[0]]]
    assert max(r.core[2] for r in first) == 4096 and max(r.core[3] for r in first) == 6000
    assert {r.window for r in first} == {order[0]} and order[0] != 0
    # pure: the plan is frozen and unchanged, only the returned order differs
    assert plan.windows == windows and plan.run_order == tuple(range(len(windows))) and plan.checksum() == checksum
    with pytest.raises(AttributeError):
        plan.windows = ()  # type: ignore[misc]
    assert all(plan.regions[i].window == w for w, ids in enumerate(plan.windows_by_id()) for i in ids)
    # a subset keeps only its own ids
    subset = order[1:5]
    assert sorted(plan.order_near((0.0, 0.0), subset)) == sorted(subset)
    assert plan.order_near((0.0, 0.0))[0] == 0


def test_focus_and_nearest_set_the_run_order_not_the_work(tissue):
    plain = make_plan(tissue, region_size=512, window_size=2, use_mask=False)
    focused = make_plan(tissue, region_size=512, window_size=2, use_mask=False, focus=(4000.0, 5900.0))
    nearest = make_plan(tissue, region_size=512, window_size=2, use_mask=False, order="nearest")
    assert focused.windows == plain.windows and focused.checksum() == plain.checksum()
    assert list(focused.run_order) == plain.order_near((4000.0, 5900.0))
    assert list(nearest.run_order) == plain.order_near((4096 / 2, 6000 / 2))
    assert focused.run_order[0] != 0


def test_global_serpentine_order(tissue):
    plan = make_plan(tissue, region_size=1024, context="global", order="serpentine", use_mask=False)
    assert len(plan.windows) == 1
    cols = [plan.regions[i].col for i in plan.windows[0]]
    ncol = plan.grid_shape[1]
    assert cols[:ncol] == list(range(ncol)) and cols[ncol : 2 * ncol] == list(reversed(range(ncol)))


def test_roi_rectangle_and_polygon(tissue):
    rect = make_plan(tissue, region_size=512, use_mask=False, roi=(0, 0, 600, 600))
    corners = {tuple(rect.regions[i].core[:2]) for w in rect.windows for i in w}
    assert corners == {(0, 0), (0, 512), (512, 0), (512, 512)}
    tri = make_plan(tissue, region_size=512, use_mask=False, roi=[(0, 0), (0, 6000), (4096, 6000)])
    kept = {i for w in tri.windows for i in w}
    bottom_left = [r.id for r in tri.regions if r.core[0] >= 3584 and r.core[3] <= 512]
    assert bottom_left and not (set(bottom_left) & kept)
    with pytest.raises(PlanError, match="does not overlap"):
        make_plan(tissue, region_size=512, use_mask=False, roi=(10000, 10000, 20000, 20000))
    with pytest.raises(PlanError):
        make_plan(tissue, region_size=512, roi=[(0, 0), (1, 1)])


def test_small_image_is_one_padded_region():
    tiny = as_image(TissueSample(300, 700), "brightfield")
    plan = make_plan(tiny, region_size=1024, use_mask=False)
    assert len(plan.regions) == 1 and plan.regions[0].core == (0, 0, 300, 700)


def test_mask_coverage_of_every_region_matches_counting_its_pixels():
    """The vectorised coverage (issue 25: a 100k px slide plans ~40k regions) against a per-region count."""
    from napari_xt.engine.plan import _coverage, region_grid

    rng = np.random.default_rng(3)
    mask = rng.random((37, 53)) > 0.6
    for ratio in (1 / 16, 0.1, 1 / 7):
        regions = region_grid((int(37 / ratio), int(53 / ratio)), 64, 16)
        got = _coverage(regions, mask, ratio)
        for r, value in zip(regions, got, strict=True):
            y0, x0, y1, x1 = (int(v * ratio) for v in r.core)
            y1, x1 = min(max(y1, y0 + 1), 37), min(max(x1, x0 + 1), 53)
            y0, x0 = min(y0, 36), min(x0, 52)
            assert value == mask[y0:y1, x0:x1].sum() / max((y1 - y0) * (x1 - x0), 1)
