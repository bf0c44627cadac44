"""The real Sentinel-1 GeoTIFF (UTM 31N, ../shared/data) and an EPSG:4326 copy of it: CRS and transform as GDAL
reads them, a degree scene planned at the model's 20 m, results exported back onto the scene. Skipped cleanly when
the folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.warp import Resampling, calculate_default_transform, reproject

from napari_xt.cli import main
from napari_xt.engine.plan import make_plan
from napari_xt.io import metric_pixel_size, open_image

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
SAR = DATA / "sar" / "pyrosar_S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """The real scene and a dual-band (VV, VV - 7 dB as VH) EPSG:4326 copy demo-sar can run (it wants 2 bands)."""
    if not SAR.exists():
        pytest.skip(f"real sample {SAR.name} not available ({DATA} absent)")
    out = tmp_path_factory.mktemp("real") / "s1_4326.tif"
    with rasterio.open(SAR) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        vv = np.full((h, w), -99.0, np.float32)
        reproject(rasterio.band(src, 1), vv, dst_transform=t, dst_crs="EPSG:4326", dst_nodata=-99.0,
                  resampling=Resampling.bilinear)
        profile = dict(src.profile, crs="EPSG:4326", transform=t, width=w, height=h, count=2)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack([vv, np.where(vv == -99.0, vv, vv - 7.0)]))
    return SAR, out


def test_real_scene_georef_equals_gdal(scenes):
    for path in scenes:
        with rasterio.open(path) as ds, open_image(path) as img:
            assert rasterio.crs.CRS.from_wkt(img.georef.crs) == ds.crs
            assert img.georef.transform == pytest.approx(tuple(ds.transform)[:6], rel=1e-12)
    with open_image(scenes[0]) as utm:
        assert utm.georef.epsg == 32631 and utm.pixel_size == (20.0, 20.0) and utm.pixel_unit == "m"


def test_real_degree_copy_plans_at_20_m_and_exports_onto_the_scene(scenes, tmp_path):
    _, deg = scenes
    with open_image(deg) as img:
        (my, mx), _ = metric_pixel_size(img)
        plan = make_plan(img, region_size=256, target_pixel_size=20.0, target_unit="m")
        assert plan.downsample_to_level0 * np.sqrt(my * mx) == pytest.approx(20.0, rel=0.02)
    store = tmp_path / "deg.xt.zarr"
    assert main(["predict", str(deg), "--model", "demo-sar", "--out", str(store)]) == 0
    assert main(["export", str(store), "--format", "gpkg", "--out", str(tmp_path / "r.gpkg")]) == 0
    with rasterio.open(deg) as ds:
        b = ds.bounds
    _, _, wkb, _ = pyogrio.raw.read(tmp_path / "r.gpkg", layer="segmentation")
    geoms = shapely.from_wkb(wkb)
    assert len(geoms) > 0 and shapely.within(geoms, shapely.box(b.left, b.bottom, b.right, b.top)).all()
