"""Writers shared by the io tests (importable by name: tests/ is not a package)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

TILE = 128


@dataclass
class Written:
    path: Path
    levels: list[np.ndarray]  # what was written, (y, x, c)


def smooth_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Tissue-like smooth RGB: JPEG keeps it close, so pixel checks against the source stay meaningful."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        fy, fx, ph = rng.uniform(0.005, 0.03, 3)
        out[..., c] = (127 + 100 * np.sin(yy * fy + ph * 10) * np.cos(xx * fx)).astype(np.uint8)
    return out


def halves(a: np.ndarray, n: int) -> list[np.ndarray]:
    levels = [a]
    for _ in range(n - 1):
        levels.append(np.ascontiguousarray(levels[-1][::2, ::2]))
    return levels


def write_page_pyramid(path: Path, levels: list[np.ndarray], compression, *, bigtiff=False, mpp=0.5,
                       photometric=None) -> Path:
    """Pyramid as consecutive pages (reduced-resolution subfiletype), the layout OpenSlide's generic-tiff reads."""
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        for i, lv in enumerate(levels):
            kw = dict(tile=(TILE, TILE), compression=compression, subfiletype=0 if i == 0 else 1)
            data = lv if lv.shape[2] != 1 else lv[..., 0]
            if photometric:
                kw["photometric"] = photometric
                if lv.shape[2] > 1:
                    kw["planarconfig"] = "contig"
            elif lv.shape[2] in (3, 4) and lv.dtype == np.uint8:
                kw["photometric"] = "rgb"
                if lv.shape[2] == 4:
                    kw["extrasamples"] = ("unassalpha",)
            else:
                kw["photometric"] = "minisblack"
                kw["planarconfig"] = "contig"
            if i == 0 and mpp:
                kw["resolution"] = (1e4 / mpp, 1e4 / mpp)
                kw["resolutionunit"] = "CENTIMETER"
            tif.write(data, **kw)
    return path


def geotiff_tags(scale=(10.0, 10.0), nodata: str | None = "-9999", band_names=None) -> list:
    tags = [
        (33550, 12, 3, (scale[0], scale[1], 0.0), False),  # ModelPixelScaleTag
        (33922, 12, 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), False),  # ModelTiepointTag
        # GeoKeyDirectory: projected model, pixel-is-area, EPSG:32631
        (34735, 3, 16, (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32631), False),
    ]
    if nodata is not None:
        tags.append((42113, 2, 0, nodata, False))
    if band_names:
        items = "".join(f'<Item name="DESCRIPTION" sample="{i}" role="description">{n}</Item>'
                        for i, n in enumerate(band_names))
        tags.append((42112, 2, 0, f"<GDALMetadata>{items}</GDALMetadata>", False))
    return tags


def write_ome_zarr(path: Path, levels: list[np.ndarray], version: str, channel_names=None, unit="micrometer",
                   pixel=0.5) -> Path:
    """NGFF multiscales written with zarr directly: v0.4 on zarr format 2, v0.5 on zarr format 3 (attrs["ome"])."""
    import zarr

    fmt = 2 if version == "0.4" else 3
    root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
    datasets = []
    for i, lv in enumerate(levels):
        arr = root.create_array(str(i), shape=(lv.shape[2],) + lv.shape[:2], chunks=(1, 256, 256), dtype=lv.dtype)
        arr[:] = lv.transpose(2, 0, 1)
        s = pixel * 2**i
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [1.0, s, s]}]})
    ms = {"axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": unit},
                   {"name": "x", "type": "space", "unit": unit}], "datasets": datasets, "name": "img"}
    if version == "0.4":
        ms["version"] = "0.4"
    attrs = {"multiscales": [ms]}
    if channel_names:
        attrs["omero"] = {"channels": [{"label": n} for n in channel_names]}
    if version == "0.5":
        attrs = {"ome": {"version": "0.5", **attrs}}
    root.attrs.update(attrs)
    return path
