"""Images in: ``open_image(path) -> LargeImage``, a lazy dask pyramid plus metadata, whatever the file format.

Backend choice (measured, see docs/reader.md): tifffile + zarr for every TIFF it reads correctly (generic/OME/Geo/
BigTIFF, SVS, NDPI: same pixels as OpenSlide, several times faster), OpenSlide for the other vendor formats, zarr for
OME-Zarr. Every way a file can be bad ends in :class:`ImageReadError` with a sentence naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._array import array_image
from ._geo import Georef, metric_pixel_size
from ._large_image import ImageReadError, LargeImage

__all__ = ["CONVERSION_HINTS", "SUPPORTED_SUFFIXES", "Georef", "ImageReadError", "LargeImage", "array_image",
           "metric_pixel_size", "open_image"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (
    ".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".tif", ".tiff", ".ome.tif", ".ome.tiff", ".qptiff", ".btf",
    ".tf8", ".ome.btf", ".dcm", ".zarr",
)
_BACKENDS = ("openslide", "tifffile", "zarr")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: TIFF-based suffixes read by tifffile when no backend is forced; .scn and .bif stay with OpenSlide, which knows
#: their vendor layouts (Leica collections, Ventana overlapping tiles)
_TIFFFILE_SUFFIXES = (".svs", ".ndpi", ".tif", ".tiff", ".qptiff", ".btf", ".tf8")
_OPENSLIDE_ONLY = (".mrxs", ".vms", ".scn", ".bif", ".dcm")
#: formats napari-xt does not read, with what would open them: said in the error instead of a bare "unsupported"
CONVERSION_HINTS: dict[str, str] = {
    ".vsi": "Olympus/Evident VSI: convert it to a pyramidal OME-TIFF with QuPath (File > Export) or "
            "`bioformats2raw` + `raw2ometiff`",
    ".czi": "Zeiss CZI: convert it to a pyramidal OME-TIFF with `bioformats2raw` + `raw2ometiff` (or Zeiss ZEN), or "
            "read it with pylibCZIrw and save an OME-TIFF",
    ".lif": "Leica LIF: convert it to OME-TIFF with `bfconvert` (Bio-Formats) or read it with readlif",
    ".nd2": "Nikon ND2: convert it to OME-TIFF with `bfconvert` or read it with the nd2 package",
    ".isyntax": "Philips iSyntax: convert it with Philips' SDK or pathology-toolkit's isyntax2raw + raw2ometiff",
    ".mds": "3DHISTECH MDS: export it as MRXS or OME-TIFF from CaseViewer / SlideViewer",
    ".jpg": "a plain JPEG has no pyramid: write a tiled pyramidal TIFF first, e.g. `vips tiffsave in.jpg out.tif "
            "--tile --pyramid --compression jpeg`",
    ".png": "a plain PNG has no pyramid: write a tiled pyramidal TIFF first, e.g. `vips tiffsave in.png out.tif "
            "--tile --pyramid`",
}
CONVERSION_HINTS[".jpeg"] = CONVERSION_HINTS[".jpg"]

_KNOWN_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"PK\x03\x04": "a ZIP archive",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}


def open_image(path: str | os.PathLike, backend: str | None = None) -> LargeImage:
    """Open ``path`` lazily; ``backend`` ("openslide" | "tifffile" | "zarr") forces one reader (tests, comparisons).

    Raises ImageReadError for any input that cannot be read, ValueError for an unknown ``backend`` name.
    """
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS} or None, got {backend!r}")
    p = Path(os.fspath(path))
    spath = str(p)
    try:
        exists = p.exists()
    except OSError as err:
        raise ImageReadError(f"{spath} cannot be accessed ({err.strerror or err}).") from err
    if not exists:
        raise ImageReadError(f"{spath} does not exist.")
    if p.is_dir():
        return _open_folder(p, backend)
    name = p.name.lower()
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(132)
    except OSError as err:
        raise ImageReadError(f"{spath} cannot be read ({err.strerror or err}).") from err
    if size == 0:
        raise ImageReadError(f"{spath} is empty (0 bytes), so it holds no image.")
    is_tiff = head[:4] in _TIFF_MAGIC
    is_dicom = head[128:132] == b"DICM"
    if backend == "zarr":
        raise ImageReadError(f"{spath} is a file; the zarr backend reads OME-Zarr folders only.")
    if backend == "openslide":
        return _via_openslide(spath)
    if backend == "tifffile":
        if not is_tiff:
            raise ImageReadError(f"{spath} is {_what(head)}, not a TIFF file, so tifffile cannot read it.")
        from ._tiff import open_tiff

        return open_tiff(spath)
    if not name.endswith(SUPPORTED_SUFFIXES):
        suffix = "".join(p.suffixes[-2:]) or "(no suffix)"
        hint = CONVERSION_HINTS.get(p.suffix.lower())
        if hint:
            raise ImageReadError(f"{spath}: napari-xt cannot read {p.suffix} files; {hint}.")
        raise ImageReadError(f"{spath} has an unsupported file type {suffix}; supported are "
                             f"{', '.join(SUPPORTED_SUFFIXES)}.")
    if name.endswith(_OPENSLIDE_ONLY):
        if name.endswith(".dcm") and not is_dicom:
            raise ImageReadError(f"{spath} is {_what(head)}, not a DICOM file.")
        if name.endswith((".scn", ".bif")) and not is_tiff:
            raise ImageReadError(f"{spath} is {_what(head)}, not the TIFF-based slide its suffix promises.")
        return _via_openslide(spath)
    if not is_tiff:
        raise ImageReadError(f"{spath} is {_what(head)}, not the TIFF-based image its suffix "
                             f"{p.suffix} promises.")
    from ._tiff import open_tiff

    try:
        return open_tiff(spath)
    except ImageReadError as tiff_err:
        # a TIFF flavour tifffile rejects may still be a slide OpenSlide knows; keep tifffile's reason otherwise
        try:
            return _via_openslide(spath)
        except ImageReadError:
            raise tiff_err from None


def _via_openslide(spath: str, slide_path: str | None = None) -> LargeImage:
    from ._openslide import open_openslide

    return open_openslide(spath, slide_path)


def _open_folder(p: Path, backend: str | None) -> LargeImage:
    spath = str(p)
    try:
        entries = {e.name for e in p.iterdir()}
    except OSError as err:
        raise ImageReadError(f"{spath} is a folder that cannot be listed ({err.strerror or err}).") from err
    zarr_like = bool(entries & {"zarr.json", ".zattrs", ".zgroup"})
    dicoms = sorted(e for e in entries if e.lower().endswith(".dcm"))
    if backend in (None, "zarr") and zarr_like:
        from ._omezarr import open_omezarr

        return open_omezarr(spath)
    if backend in (None, "openslide") and dicoms:
        return _via_openslide(spath, str(p / dicoms[0]))
    if backend == "tifffile":
        raise ImageReadError(f"{spath} is a folder; the tifffile backend reads single TIFF files.")
    raise ImageReadError(f"{spath} is a folder, but neither an OME-Zarr image (no zarr.json/.zattrs) nor a DICOM "
                         "slide series (no .dcm files).")


def _what(head: bytes) -> str:
    for magic, what in _KNOWN_MAGIC.items():
        if head.startswith(magic):
            return what
    if head[128:132] == b"DICM":
        return "a DICOM file"
    try:
        text = head[:128].decode("utf-8", errors="strict" if len(head) < 128 else "ignore")
    except UnicodeDecodeError:
        return "a file of unknown type"
    if text and all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return "a text file"
    return "a file of unknown type"
