"""Units are never mixed: degree scenes plan at the model's metres per pixel, µm models refuse metre images, absurd
resampling is refused before the run, and an orthomosaic's transparent border costs no regions."""

from __future__ import annotations

import numpy as np
import pytest
from geohelpers import write_ortho, write_scene
from rasterio.transform import Affine

from napari_xt.engine.plan import MAX_READ_SIDE, make_plan, model_pixel_unit
from napari_xt.errors import PlanError
from napari_xt.io import metric_pixel_size, open_image
from napari_xt.model.config import XTConfig


@pytest.fixture(scope="module")
def scene_4326(tmp_path_factory):
    """Sen1Floods11-like: EPSG:4326, 8.98e-5 degree pixels (about 10 m), at 45 N."""
    px = 8.98e-5
    return write_scene(tmp_path_factory.mktemp("plan") / "s1.tif", "EPSG:4326", Affine(px, 0, 7.0, 0, -px, 45.0),
                       h=512, w=512)


def test_degree_scene_plans_at_the_models_metres(scene_4326):
    with open_image(scene_4326) as img:
        plan = make_plan(img, region_size=256, target_pixel_size=20.0, target_unit="m")
        (my, mx), _ = metric_pixel_size(img)
    # what the issue saw: the plan compared 20 (m) with 8.98e-5 (degrees) and asked for a 23 PiB read
    analysis_m = plan.downsample_to_level0 * np.sqrt(my * mx)
    assert analysis_m == pytest.approx(20.0, rel=0.02)
    assert plan.analysis_shape[0] == pytest.approx(512 * np.sqrt(my * mx) / 20.0, abs=2)
    assert plan.region_size * plan.scale < MAX_READ_SIDE


def test_micrometre_model_on_a_metre_image_needs_a_level(scene_4326, tmp_path):
    ortho = write_ortho(tmp_path / "o.tif", h=600, w=500, border=50)
    with open_image(ortho) as img:
        with pytest.raises(PlanError) as info:
            make_plan(img, region_size=256, target_pixel_size=0.5, target_unit="um")
        assert info.value.option == "level" and "µm" in str(info.value) and "0.5 m" in str(info.value)
        assert make_plan(img, region_size=256, level=0, target_unit="um").scale == 1.0  # explicit: runs as is
    with open_image(scene_4326) as img, pytest.raises(PlanError, match="microscopy"):
        make_plan(img, region_size=256, target_pixel_size=0.25, target_unit="um")


def test_absurd_resampling_is_refused_before_the_run(scene_4326):
    with open_image(scene_4326) as img:
        with pytest.raises(PlanError, match="magnified") as info:
            make_plan(img, region_size=256, target_pixel_size=0.1, target_unit="m")
        assert info.value.option == "mpp"
        with pytest.raises(PlanError, match="would cover"):
            make_plan(img, region_size=256, target_pixel_size=50000.0, target_unit="m")


def test_model_unit_from_its_config():
    assert model_pixel_unit(XTConfig(pixel_size=20.0, input_kind="sar")) == "m"
    assert model_pixel_unit(XTConfig(pixel_size=0.5)) == "um"
    assert model_pixel_unit(XTConfig(pixel_size=0.1, pixel_unit="m", input_kind="generic")) == "m"


@pytest.mark.parametrize("mode", ["alpha", "nodata"])
def test_transparent_or_nodata_border_costs_no_regions(tmp_path, mode):
    border = 256
    path = write_ortho(tmp_path / f"{mode}.tif", h=1536, w=1280, border=border, alpha=mode == "alpha",
                       nodata=0 if mode == "nodata" else None)
    with open_image(path) as img:
        plan = make_plan(img, region_size=128)
        full = make_plan(img, region_size=128, use_mask=False)
    kept = [plan.regions[i] for w in plan.windows for i in w]
    inside = [r for r in full.regions if r.core[0] >= border and r.core[2] <= 1536 - border
              and r.core[1] >= border and r.core[3] <= 1280 - border]
    assert {r.id for r in inside} <= {r.id for r in kept}
    assert all(r.core[2] > border and r.core[0] < 1536 - border and r.core[3] > border and r.core[1] < 1280 - border
               for r in kept)
    assert len(kept) == len(inside)  # the border is region-aligned here: not one region is spent on it
