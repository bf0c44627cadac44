"""OpenSlide backend: the vendor formats tifffile cannot read correctly (MRXS, VMS, SCN, BIF, DICOM WSI) and a
fallback for TIFFs tifffile refuses.

Dask chunks are several OpenSlide tiles each, read with one ``read_region`` call (docs/reader.md compares this with
one delayed task per tile). OpenSlide handles become permanently unusable after a decoding error, so a failed read
reopens the handle: one damaged tile must not make the rest of the slide unreadable.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from ._large_image import ImageReadError, LargeImage
from ._sar import guess_kind

_DEFAULT_TILE = 256


class _Handle:
    """A shared OpenSlide handle that can be swapped for a fresh one after an error."""

    def __init__(self, path: str):
        import openslide

        self.path = path
        self._lock = threading.Lock()
        self.slide = openslide.OpenSlide(path)

    def reopen(self, broken) -> None:
        import openslide

        with self._lock:
            if self.slide is broken:  # another thread may have reopened already
                with contextlib.suppress(Exception):
                    broken.close()
                self.slide = openslide.OpenSlide(self.path)

    def close(self) -> None:
        self.slide.close()


class _SlideSource:
    def __init__(self, handle: _Handle, level: int):
        slide = handle.slide
        self._handle, self._level = handle, level
        w, h = slide.level_dimensions[level]
        self._ds = float(slide.level_downsamples[level])
        self.shape = (h, w, 3)
        self.dtype = np.dtype(np.uint8)
        props = slide.properties
        self.tile = (int(props.get(f"openslide.level[{level}].tile-height", _DEFAULT_TILE)),
                     int(props.get(f"openslide.level[{level}].tile-width", _DEFAULT_TILE)))
        self.reads = 0

    def read(self, y0, y1, x0, x1):
        self.reads += 1
        slide = self._handle.slide
        loc = (int(round(x0 * self._ds)), int(round(y0 * self._ds)))
        try:
            region = slide.read_region(loc, self._level, (x1 - x0, y1 - y0))
        except Exception:
            self._handle.reopen(slide)
            raise
        return np.asarray(region)[:, :, :3]  # RGBA -> RGB; transparent (outside) pixels are already 0


def open_openslide(path: str, slide_path: str | None = None) -> LargeImage:
    """``slide_path`` is the file handed to OpenSlide (a DICOM series is opened through one of its files)."""
    try:
        import openslide
    except Exception as err:  # pragma: no cover - openslide-bin is a hard dependency
        raise ImageReadError(f"{path} needs OpenSlide, which is not available here ({err}).") from err
    target = slide_path or path
    try:
        handle = _Handle(target)
    except openslide.OpenSlideUnsupportedFormatError as err:
        raise ImageReadError(f"{path} is not a slide format OpenSlide recognises.") from err
    except Exception as err:
        raise ImageReadError(f"{path} could not be opened by OpenSlide ({type(err).__name__}: {err}).") from err
    try:
        slide = handle.slide
        props = dict(slide.properties)
        sources = [_SlideSource(handle, i) for i in range(slide.level_count)]
        vendor = props.get("openslide.vendor")
        pixel_size = None
        if props.get("openslide.mpp-x") and props.get("openslide.mpp-y"):
            pixel_size = (float(props["openslide.mpp-y"]), float(props["openslide.mpp-x"]))
        fluorescence = vendor == "hamamatsu" and _ndpi_fluo(target)
        kind = guess_kind(np.uint8, 3, vendor=vendor, pixel_unit="um" if pixel_size else None,
                          fluorescence=fluorescence)
        st = os.stat(target)
    except Exception as err:
        handle.close()
        raise ImageReadError(f"{path}: OpenSlide opened the file but its levels cannot be read ({err}).") from err
    return LargeImage(
        path, sources, format="openslide", vendor=vendor, pixel_size=pixel_size,
        pixel_unit="um" if pixel_size else None, band_names=["R", "G", "B"], kind=kind,
        metadata={"openslide": props}, tile_size=sources[0].tile, closers=[handle.close],
        name_token=f"{abs(hash((target, st.st_mtime_ns, st.st_size)))}",
    )


def _ndpi_fluo(path: str) -> bool:
    """OpenSlide does not expose NDPI's Fluorescence tag (65434); ask tifffile, which only parses headers here."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            ndpi_tags = getattr(tif.pages[0], "ndpi_tags", None) or {}  # a TiffFrame, or no NDPI: no tags
            return bool(ndpi_tags.get("Fluorescence"))
    except Exception:
        return False
