"""Pyramids written with tifffile into tmp dirs (session-scoped), with the arrays they hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from iohelpers import TILE, Written, geotiff_tags, halves, smooth_rgb, write_page_pyramid


@pytest.fixture(scope="session")
def io_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("io")


@pytest.fixture(scope="session")
def rgb_jpeg(io_dir) -> Written:
    levels = halves(smooth_rgb(1024, 1536, seed=1), 3)
    return Written(write_page_pyramid(io_dir / "rgb_jpeg.tif", levels, "jpeg"), levels)


@pytest.fixture(scope="session")
def rgb_deflate(io_dir) -> Written:
    rng = np.random.default_rng(2)
    levels = halves(rng.integers(0, 256, (1000, 1300, 3), dtype=np.uint8), 3)  # odd sizes: partial edge tiles
    return Written(write_page_pyramid(io_dir / "rgb_deflate.tiff", levels, "zlib"), levels)


@pytest.fixture(scope="session")
def ome_subifd(io_dir) -> Written:
    """3-channel uint16 OME-TIFF with a SubIFD pyramid, as converters such as bioformats2raw/raw2ometiff write it."""
    rng = np.random.default_rng(3)
    levels = halves(rng.integers(0, 4000, (768, 1024, 3), dtype=np.uint16), 3)
    path = io_dir / "fluo.ome.tif"
    meta = {"axes": "CYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm", "Channel": {"Name": ["DAPI", "FITC", "TRITC"]}}
    with tifffile.TiffWriter(path, ome=True, bigtiff=True) as tif:
        for i, lv in enumerate(levels):
            kw = dict(tile=(TILE, TILE), compression="zlib", photometric="minisblack")
            if i == 0:
                tif.write(lv.transpose(2, 0, 1), subifds=len(levels) - 1, metadata=meta, **kw)
            else:
                tif.write(lv.transpose(2, 0, 1), subfiletype=1, metadata=None, **kw)
    return Written(path, levels)


@pytest.fixture(scope="session")
def flat_bigtiff(io_dir) -> Written:
    """One big-ish single level (BigTIFF): the reader must add the lower levels itself, lazily."""
    rng = np.random.default_rng(4)
    a = rng.integers(0, 60000, (2600, 3000, 1), dtype=np.uint16)
    return Written(write_page_pyramid(io_dir / "flat_big.tif", [a], "zlib", bigtiff=True, mpp=None), [a])


@pytest.fixture(scope="session")
def sar_geotiff(io_dir) -> Written:
    """Dual-pol float32 dB scene with a nodata border and a NaN hole."""
    rng = np.random.default_rng(5)
    a = rng.normal(-15, 3, (1400, 1100, 2)).astype(np.float32)
    a[:, :50] = -9999.0
    a[700:720, 500:520] = np.nan
    path = io_dir / "s1_scene.tif"
    tifffile.imwrite(path, a, tile=(256, 256), compression="zlib", photometric="minisblack", planarconfig="contig",
                     extratags=geotiff_tags(band_names=["VV", "VH"]))
    return Written(path, [a])


@pytest.fixture(scope="session")
def corrupt_jpeg(io_dir, rgb_jpeg) -> tuple[Path, int, int]:
    """Copy of rgb_jpeg with tile (row 1, col 2) of level 0 overwritten by garbage; returns (path, y, x)."""
    with tifffile.TiffFile(rgb_jpeg.path) as tif:
        page = tif.pages[0]
        per_row = -(-page.imagewidth // TILE)
        index = 1 * per_row + 2
        off, count = page.dataoffsets[index], page.databytecounts[index]
    data = bytearray(rgb_jpeg.path.read_bytes())
    data[off + 2 : off + count] = b"\xff" * (count - 2)  # keep SOI, destroy the rest
    path = io_dir / "corrupt.tif"
    path.write_bytes(bytes(data))
    return path, 1 * TILE, 2 * TILE
