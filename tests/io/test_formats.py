"""TIFF-family suffixes that tifffile reads are accepted (Akoya .qptiff, BigTIFF .btf/.tf8), and formats napari-xt
does not read are refused with what *would* open them, not a bare "unsupported"."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_xt.io import CONVERSION_HINTS, SUPPORTED_SUFFIXES, ImageReadError, open_image


def _planar_pyramid(path, bigtiff=False):
    """A 4-channel planar pyramid (sub-IFD level), the page layout of an Akoya/Vectra multiplex scan."""
    data = (np.random.default_rng(0).random((4, 512, 512)) * 255).astype(np.uint8)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        kw = dict(tile=(256, 256), photometric="minisblack", planarconfig="separate", metadata=None)
        tif.write(data, subifds=1, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER", **kw)
        tif.write(data[:, ::2, ::2], subfiletype=1, **kw)
    return data


@pytest.mark.parametrize(("name", "bigtiff"), [("scan.qptiff", False), ("scan.btf", True), ("scan.tf8", True)])
def test_tiff_family_suffixes_open(tmp_path, name, bigtiff):
    data = _planar_pyramid(tmp_path / name, bigtiff)
    image = open_image(tmp_path / name)
    assert [lvl.shape for lvl in image.levels] == [(512, 512, 4), (256, 256, 4)]
    assert image.pixel_size == pytest.approx((0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(image.levels[0][:64, :64]), np.moveaxis(data, 0, -1)[:64, :64])
    assert any(name.endswith(s) for s in SUPPORTED_SUFFIXES)


@pytest.mark.parametrize(("suffix", "expected"), [(".czi", "bioformats2raw"), (".vsi", "QuPath"),
                                                  (".nd2", "nd2"), (".jpg", "pyramid")])
def test_unsupported_formats_say_what_would_open_them(tmp_path, suffix, expected):
    path = tmp_path / f"image{suffix}"
    path.write_bytes(b"\x00" * 256)
    with pytest.raises(ImageReadError, match=expected) as info:
        open_image(path)
    assert path.name in str(info.value) and suffix in CONVERSION_HINTS


def test_unknown_suffix_lists_what_is_supported(tmp_path):
    path = tmp_path / "table.xyz"
    path.write_bytes(b"\x00" * 256)
    with pytest.raises(ImageReadError, match=r"\.qptiff") as info:
        open_image(path)
    assert "table.xyz" in str(info.value)
