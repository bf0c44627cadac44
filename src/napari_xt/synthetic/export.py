"""Write a synthetic sample to a tiled OME-TIFF pyramid (SubIFDs), streaming one tile row at a time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

_TILE = 512


def _tiles(level, tile: int) -> Iterator[np.ndarray]:
    h, w, _ = level.shape
    for y in range(0, h, tile):
        row = np.asarray(level[y : y + tile].compute())
        for x in range(0, w, tile):
            block = row[:, x : x + tile]
            if block.shape[:2] != (tile, tile):
                padded = np.zeros((tile, tile, block.shape[2]), dtype=block.dtype)
                padded[: block.shape[0], : block.shape[1]] = block
                block = padded
            yield block


def write_ome_tiff(sample, path: str | os.PathLike, progress: bool = False) -> Path:
    """Write ``sample.levels`` as an OME-TIFF pyramid; the file appears complete or not at all."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    levels = sample.levels
    rgb = levels[0].dtype == np.uint8 and levels[0].shape[-1] == 3
    compression = "jpeg" if rgb else "zlib"
    unit = "µm" if rgb else "m"
    meta = {
        "axes": "YXS" if rgb else "YXC",
        "PhysicalSizeX": sample.pixel_size,
        "PhysicalSizeY": sample.pixel_size,
        "PhysicalSizeXUnit": unit,
        "PhysicalSizeYUnit": unit,
    }
    if not rgb:
        meta = {"axes": "CYX", **{k: v for k, v in meta.items() if k != "axes"}}
        meta["Channel"] = {"Name": list(sample.band_names)}
    steps = sum(-(-lvl.shape[0] // _TILE) for lvl in levels)
    bar = _progress(progress, steps)
    try:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            for i, level in enumerate(levels):
                data = level if rgb else level.transpose(2, 0, 1)
                kwargs = dict(
                    tile=(_TILE, _TILE),
                    compression=compression,
                    dtype=level.dtype,
                    photometric="rgb" if rgb else "minisblack",
                )
                if rgb:
                    tiles = _counting(_tiles(level, _TILE), bar, -(-level.shape[1] // _TILE))
                    shape = level.shape
                else:
                    tiles = _counting(_band_tiles(level, _TILE), bar, -(-level.shape[1] // _TILE) * level.shape[2])
                    shape = data.shape
                if i == 0:
                    tif.write(tiles, shape=shape, subifds=len(levels) - 1, metadata=meta, **kwargs)
                else:
                    tif.write(tiles, shape=shape, subfiletype=1, metadata=None, **kwargs)
        os.replace(tmp, path)
    finally:
        if bar is not None:
            bar.stop()
        tmp.unlink(missing_ok=True)
    return path


def _band_tiles(level, tile: int) -> Iterator[np.ndarray]:
    """Tiles in (band, tile-row, tile-col) order, as tifffile expects for planar data."""
    for b in range(level.shape[2]):
        for block in _tiles(level[..., b : b + 1], tile):
            yield block[..., 0]


def _counting(it, bar, per_row: int):
    for n, item in enumerate(it, 1):
        if bar is not None and n % per_row == 0:
            bar.advance(bar.task_ids[0])
        yield item


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import Progress

    bar = Progress(transient=True)
    bar.add_task("writing tiles", total=total)
    bar.start()
    return bar
