"""tifffile and OpenSlide backends on pyramids written here: levels, metadata, pixels against the source and each
other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from iohelpers import TILE, write_page_pyramid

from napari_xt.io import ImageReadError, LargeImage, open_image


@pytest.mark.parametrize("backend", [None, "tifffile", "openslide"])
def test_deflate_pyramid_exact_through_every_backend(rgb_deflate, backend):
    with open_image(rgb_deflate.path, backend=backend) as img:
        assert isinstance(img, LargeImage)
        assert img.format == ("openslide" if backend == "openslide" else "tifffile")
        assert img.vendor == "generic-tiff"
        assert [lv.shape for lv in img.levels] == [lv.shape for lv in rgb_deflate.levels]
        assert img.downsamples[0] == 1.0 and img.downsamples[1] == pytest.approx(2.0, rel=1e-3)
        assert img.pixel_size == pytest.approx((0.5, 0.5)) and img.pixel_unit == "um"
        assert img.tile_size == (TILE, TILE)
        assert img.band_names == ["R", "G", "B"] and img.kind == "brightfield"
        for got, want in zip(img.levels, rgb_deflate.levels):
            np.testing.assert_array_equal(got.compute(), want)


def test_openslide_and_tifffile_agree_on_jpeg_pyramid(rgb_jpeg):
    """Same decoder family underneath: OpenSlide and tifffile must give bit-identical JPEG pixels, every level."""
    with open_image(rgb_jpeg.path, backend="openslide") as a, open_image(rgb_jpeg.path, backend="tifffile") as b:
        assert a.n_levels == b.n_levels == 3  # OpenSlide sees tifffile's page pyramid as three levels
        for la, lb, src in zip(a.levels, b.levels, rgb_jpeg.levels):
            pa, pb = la.compute(), lb.compute()
            np.testing.assert_array_equal(pa, pb)
            assert np.abs(pa.astype(int) - src).mean() < 3  # and JPEG stays close to what was written


def test_read_region_pads_outside_and_matches_levels(rgb_deflate):
    with open_image(rgb_deflate.path) as img:
        src = rgb_deflate.levels[1]
        r = img.read_region(1, -5, src.shape[1] - 20, 40, 50)
        assert r.shape == (40, 50, 3) and r.dtype == np.uint8
        assert not r[:5].any() and not r[:, 20:].any()
        np.testing.assert_array_equal(r[5:, :20], src[:35, -20:])
        assert not img.read_region(0, 5000, 5000, 8, 8).any()


def test_single_channel_and_channels_exact(tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "u8_1": rng.integers(0, 256, (300, 400, 1), dtype=np.uint8),
        "u16_2": rng.integers(0, 65535, (300, 400, 2), dtype=np.uint16),
        "f32_3": rng.normal(size=(300, 400, 3)).astype(np.float32),
        "u16_4": rng.integers(0, 65535, (300, 400, 4), dtype=np.uint16),
    }
    for name, a in cases.items():
        path = write_page_pyramid(tmp_path / f"{name}.tif", [a], "zlib", mpp=None,
                                  photometric="minisblack")
        with open_image(path) as img:
            assert img.shape == a.shape and img.dtype == a.dtype, name
            assert len(img.band_names) == a.shape[2]
            np.testing.assert_array_equal(img.read_region(0, 0, 0, 300, 400), a)


def test_rgba_drops_alpha_like_openslide(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (256, 384, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    path = write_page_pyramid(tmp_path / "rgba.tif", [rgba], "zlib")
    with open_image(path, backend="tifffile") as a, open_image(path, backend="openslide") as b:
        assert a.shape == b.shape == (256, 384, 3)
        np.testing.assert_array_equal(a.levels[0].compute(), rgba[..., :3])
        np.testing.assert_array_equal(b.levels[0].compute(), rgba[..., :3])


def test_ome_subifd_pyramid_tifffile_sees_levels_openslide_does_not(ome_subifd):
    with open_image(ome_subifd.path) as img:
        assert img.format == "tifffile" and img.vendor == "ome"
        assert [lv.shape for lv in img.levels] == [lv.shape for lv in ome_subifd.levels]
        assert img.band_names == ["DAPI", "FITC", "TRITC"]
        assert img.pixel_size == pytest.approx((0.325, 0.325)) and img.pixel_unit == "um"
        assert img.kind == "fluorescence" and img.dtype == np.uint16
        for got, want in zip(img.levels, ome_subifd.levels):
            np.testing.assert_array_equal(got.compute(), want)
        lo, hi = img.contrast_limits()
        assert 0 <= lo < 200 and 3800 < hi <= 4000
    # OpenSlide either refuses OME-TIFF or sees only the full-resolution page: never the SubIFD levels
    try:
        with open_image(ome_subifd.path, backend="openslide") as img:
            assert img.levels[0].shape[:2] == ome_subifd.levels[0].shape[:2]
            assert img.format == "openslide"
    except ImageReadError as err:
        assert "fluo.ome.tif" in str(err)


def test_flat_bigtiff_gets_lazy_levels_without_reading_at_open(flat_bigtiff):
    with tifffile.TiffFile(flat_bigtiff.path) as tif:
        assert tif.is_bigtiff
    with open_image(flat_bigtiff.path) as img:
        assert img._sources[0].reads == 0  # nothing decoded by open
        shapes = [lv.shape[:2] for lv in img.levels]
        assert shapes == [(2600, 3000), (1300, 1500), (650, 750)]
        assert all(a[0] > b[0] and a[1] > b[1] for a, b in zip(shapes, shapes[1:]))
        assert img.downsamples == pytest.approx([1.0, 2.0, 4.0])
        assert img.pixel_size is None and img.pixel_unit is None and img.kind == "generic"
        a = flat_bigtiff.levels[0].astype(np.float64)
        want = np.rint(a.reshape(1300, 2, 1500, 2, 1).mean(axis=(1, 3)))
        np.testing.assert_array_equal(img.levels[1].compute(), want.astype(np.uint16))
        np.testing.assert_array_equal(img.read_region(2, 10, 20, 30, 40), img.levels[2][10:40, 20:60].compute())
        before = img._sources[0].reads
        lo, hi = img.contrast_limits()
        assert img._sources[0].reads - before <= 16  # sampled windows, not a full-resolution pass
        assert 0 <= lo < 2000 and 58000 < hi < 60000
        assert img.level_for_downsample(3.0) == 1 and img.level_for_downsample(100) == 2


def test_open_is_light_on_dask_graph(rgb_jpeg):
    with open_image(rgb_jpeg.path) as img:
        tasks = sum(len(lv.__dask_graph__()) for lv in img.levels)
        assert tasks < 20  # multi-tile chunks: a 1024x1536 level is a handful of tasks, not one per tile


def test_metadata_is_json_serialisable(rgb_jpeg, ome_subifd, sar_geotiff):
    for w in (rgb_jpeg, ome_subifd, sar_geotiff):
        with open_image(w.path) as img:
            text = json.dumps(img.metadata)
            assert "tiff" in img.metadata and len(text) > 20


def test_close_is_idempotent_and_reads_after_close_fail_cleanly(rgb_jpeg):
    img = open_image(rgb_jpeg.path)
    img.close()
    img.close()
    with pytest.raises(ImageReadError, match="closed"):
        img.read_region(0, 0, 0, 10, 10)
