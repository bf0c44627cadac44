"""Every kind of bad input ends in ImageReadError with a sentence naming the file; damaged tiles name their place."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile

from napari_xt.io import SUPPORTED_SUFFIXES, ImageReadError, open_image

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _absurd_tiff(path, width=10**7, height=10**7, bytecount=0):
    """Hand-made classic TIFF: one 8-bit strip claiming width x height pixels, with ``bytecount`` bytes of data."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, bytecount)]
    ifd_offset = 8 + max(bytecount, 0)
    out = b"II*\x00" + struct.pack("<I", ifd_offset) + b"\x00" * bytecount
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        fmt = "<HHIHH" if typ == 3 else "<HHII"
        out += struct.pack(fmt, tag, typ, count, value, 0) if typ == 3 else struct.pack(fmt, tag, typ, count, value)
    out += struct.pack("<I", 0)
    path.write_bytes(out)
    return path


def _cases(tmp_path, rgb_jpeg):
    (tmp_path / "empty.svs").write_bytes(b"")
    (tmp_path / "picture.svs").write_bytes(PNG)
    (tmp_path / "notes.tif").write_text("this is not an image\n" * 20)
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "scan.ndpi").write_bytes(b"\x00\x01garbage" * 50)
    data = rgb_jpeg.path.read_bytes()
    (tmp_path / "truncated.tif").write_bytes(data[: len(data) // 2])
    (tmp_path / "header_only.tif").write_bytes(data[:100])
    _absurd_tiff(tmp_path / "absurd_nodata.tif")
    _absurd_tiff(tmp_path / "absurd_short.tif", bytecount=100)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "readme.txt").write_text("x")
    (tmp_path / "empty.zarr").mkdir()
    (tmp_path / "fake.dcm").write_bytes(b"\x00" * 200)
    (tmp_path / "slide.mrxs").write_text("[GENERAL]\nnothing useful\n")
    return {
        "missing.svs": "does not exist",
        "empty.svs": "empty",
        "picture.svs": "PNG",
        "notes.tif": "text file",
        "table.csv": "unsupported",
        "scan.ndpi": "not the TIFF",
        "truncated.tif": "truncated|not a readable|could not",
        "header_only.tif": "not a readable|truncated|could not",
        "absurd_nodata.tif": "no pixel data",
        "absurd_short.tif": "too large|truncated|damaged",
        "folder": "neither an OME-Zarr",
        "empty.zarr": "neither an OME-Zarr|not a readable Zarr|multiscales",
        "fake.dcm": "not a DICOM",
        "slide.mrxs": "OpenSlide",
    }


def test_every_bad_input_raises_image_read_error_naming_the_file(tmp_path, rgb_jpeg):
    for name, expected in _cases(tmp_path, rgb_jpeg).items():
        with pytest.raises(ImageReadError, match=expected) as info:
            open_image(tmp_path / name)
        msg = str(info.value)
        assert name in msg, msg
        assert not msg.startswith("Traceback") and len(msg) < 600


@pytest.mark.parametrize("backend", ["tifffile", "openslide", "zarr"])
def test_forced_backends_also_raise_image_read_error(tmp_path, backend):
    (tmp_path / "picture.tif").write_bytes(PNG)
    with pytest.raises(ImageReadError, match="picture.tif"):
        open_image(tmp_path / "picture.tif", backend=backend)


def test_unknown_backend_is_a_programming_error(rgb_jpeg):
    with pytest.raises(ValueError, match="backend"):
        open_image(rgb_jpeg.path, backend="gdal")


def test_absurd_dimensions_do_not_allocate(tmp_path):
    import resource

    path = _absurd_tiff(tmp_path / "huge.tif", bytecount=100)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageReadError):
        open_image(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no 10^14-byte attempt


@pytest.mark.parametrize("backend", ["tifffile", "openslide"])
def test_corrupt_tile_is_reported_with_its_location(corrupt_jpeg, rgb_jpeg, backend):
    path, ty, tx = corrupt_jpeg
    with open_image(path, backend=backend) as img:  # opening still works: headers are intact
        with pytest.raises(ImageReadError, match=rf"level 0, y={ty}, x={tx}") as info:
            img.read_region(0, 0, 0, 512, 512)
        assert "corrupt.tif" in str(info.value)
        with pytest.raises(ImageReadError, match="corrupt.tif"):
            img.levels[0].compute()
        # the rest of the slide stays readable (OpenSlide's handle is reopened after its error)
        good = img.read_region(0, 512, 512, 256, 256)
        with open_image(rgb_jpeg.path, backend=backend) as ref:
            np.testing.assert_array_equal(good, ref.read_region(0, 512, 512, 256, 256))
        assert img.read_region(1, 0, 0, 64, 64).shape == (64, 64, 3)  # other levels unaffected


def test_missing_tiles_read_as_zero(tmp_path):
    """Sparse tiles (offset/bytecount 0) are legal TIFF and must not be mistaken for damage."""
    path = tmp_path / "sparse.tif"
    a = np.zeros((512, 512), np.uint8)
    a[:256, :256] = 7
    tifffile.imwrite(path, a, tile=(256, 256), compression="zlib")
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["TileByteCounts"]
        counts = list(tif.pages[0].databytecounts)
        offset, itemsize = tag.valueoffset, struct.calcsize(tif.byteorder + tag.dtype_name[0])
    fmt = "<I" if itemsize == 4 else "<Q"
    data[offset + 3 * itemsize : offset + 4 * itemsize] = struct.pack(fmt, 0)
    path.write_bytes(bytes(data))
    assert counts[3] > 0
    with open_image(path) as img:
        r = img.read_region(0, 0, 0, 512, 512)[..., 0]
        assert (r[:256, :256] == 7).all() and not r[256:, 256:].any()


def test_supported_suffixes_contract():
    """Every suffix the reader accepts is offered to napari by the manifest, and the classic ones stay."""
    from pathlib import Path

    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[2] / "src" / "napari_xt" / "napari.yaml").read_text())
    patterns = {p for r in manifest["contributions"]["readers"] for p in r["filename_patterns"]}
    assert {f"*{s}" for s in SUPPORTED_SUFFIXES if s != ".ome.btf"} <= patterns
    assert set(SUPPORTED_SUFFIXES) >= {".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".tif", ".tiff",
                                       ".ome.tif", ".ome.tiff", ".dcm", ".zarr", ".qptiff"}
