"""SAR GeoTIFFs (nodata, NaN, metres, dual-pol) and OME-Zarr v0.4 / v0.5 stores written with zarr."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from iohelpers import geotiff_tags, halves, smooth_rgb, write_ome_zarr

from napari_xt.io import ImageReadError, open_image


def test_sar_geotiff_metadata_mask_and_contrast(sar_geotiff):
    with open_image(sar_geotiff.path) as img:
        a = sar_geotiff.levels[0]
        assert img.kind == "sar" and img.vendor == "geotiff" and img.format == "tifffile"
        assert img.pixel_size == (10.0, 10.0) and img.pixel_unit == "m"
        assert img.band_names == ["VV", "VH"] and img.nodata == -9999.0
        assert img.dtype == np.float32 and img.shape == a.shape
        np.testing.assert_array_equal(img.read_region(0, 0, 0, *a.shape[:2]), a)
        mask = img.nodata_mask(0).compute()
        want = (a == -9999.0).any(axis=2) | np.isnan(a).any(axis=2)
        np.testing.assert_array_equal(mask, want)
        assert mask[:, :50].all() and mask[705, 505] and not mask[100, 100]
        lo, hi = img.contrast_limits()
        assert -25 < lo < -18 and -12 < hi < -5  # nodata and NaN excluded: -9999 would drag lo far down
        # lower levels are strided, so nodata stays nodata at every level
        assert img.n_levels == 2 and img.levels[1].shape == (700, 550, 2)
        assert img.nodata_mask(1)[:, :25].all().compute()


def test_sar_single_band_in_linear_power_with_nan_nodata(tmp_path):
    a = np.random.default_rng(0).gamma(1.0, 0.05, (300, 200)).astype(np.float32)
    a[:10] = np.nan
    path = tmp_path / "S1B_IW_GRDH_VH_linear.tif"
    tifffile.imwrite(path, a, compression="zlib", extratags=geotiff_tags(scale=(20.0, 20.0), nodata="nan"))
    with open_image(path) as img:
        assert img.kind == "sar" and img.nodata is None and img.band_names == ["VH"]
        assert img.pixel_size == (20.0, 20.0) and img.shape == (300, 200, 1)
        assert img.nodata_mask(0)[:10].all().compute() and not img.nodata_mask(0)[10:].any().compute()
        lo, hi = img.contrast_limits()
        assert 0 <= lo < hi < 1


def test_float_without_geotags_is_still_sar(tmp_path):
    a = np.random.default_rng(1).normal(-12, 2, (128, 160, 2)).astype(np.float32)
    path = tmp_path / "dual.tif"
    tifffile.imwrite(path, a, photometric="minisblack", planarconfig="contig")
    with open_image(path) as img:
        assert img.kind == "sar" and img.pixel_size is None and img.band_names == ["C0", "C1"]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_multiscales(tmp_path, version):
    rng = np.random.default_rng(2)
    levels = halves(rng.integers(0, 1000, (600, 800, 2), dtype=np.uint16), 3)
    path = write_ome_zarr(tmp_path / f"img_{version}.zarr", levels, version, channel_names=["DAPI", "GFP"])
    with open_image(path) as img:
        assert img.format == "ome-zarr" and img.vendor == "ome"
        assert [lv.shape for lv in img.levels] == [lv.shape for lv in levels]
        assert img.downsamples == pytest.approx([1.0, 2.0, 4.0])
        assert img.pixel_size == (0.5, 0.5) and img.pixel_unit == "um"
        assert img.band_names == ["DAPI", "GFP"] and img.kind == "fluorescence" and img.tile_size == (256, 256)
        for got, want in zip(img.levels, levels):
            np.testing.assert_array_equal(got.compute(), want)
        np.testing.assert_array_equal(img.read_region(1, 290, 390, 20, 20)[:10, :10], levels[1][290:, 390:])
    with open_image(path, backend="zarr") as img:
        assert img.format == "ome-zarr"


def test_ome_zarr_rgb_in_metres_and_bioformats2raw_layout(tmp_path):
    rgb = smooth_rgb(300, 400)
    root = tmp_path / "converted.zarr"
    import zarr

    zarr.open_group(str(root), mode="w", zarr_format=3).attrs["bioformats2raw.layout"] = 3
    write_ome_zarr(root / "0", [rgb], "0.5", unit="meter", pixel=10.0)
    with open_image(root) as img:
        assert img.kind == "brightfield" and img.band_names == ["R", "G", "B"]
        assert img.pixel_size == (10.0, 10.0) and img.pixel_unit == "m"
        np.testing.assert_array_equal(img.levels[0].compute(), rgb)


def test_zarr_without_multiscales_is_refused(tmp_path):
    import zarr

    root = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    root.create_array("data", shape=(10, 10), dtype="u1")
    with pytest.raises(ImageReadError, match=r"plain\.zarr.*multiscales"):
        open_image(tmp_path / "plain.zarr")
