"""napari layers in, engine objects out: images, ROIs, view points and store locations (no Qt, no torch).

Layers are read duck-typed (``data``, ``multiscale``, ``rgb``, ``scale``, ``translate``, ``metadata``), so this module
does not import napari either; the widget hands its layers over and gets plain engine inputs back.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..io import ImageReadError, LargeImage, open_image
from ..io._array import ArraySource
from ..io._large_image import Source

if TYPE_CHECKING:
    from ..synthetic import SarSample, TissueSample


def layer_path(layer: Any) -> str | None:
    """The file our reader opened this layer from, if it still exists."""
    meta = (getattr(layer, "metadata", None) or {}).get("napari_xt") or {}
    path = meta.get("path")
    return str(path) if path and os.path.exists(str(path)) else None


def layer_pixel_size(layer: Any) -> tuple[float, float] | None:
    """Physical pixel size (y, x) of level 0: our metadata first, then a non-unit layer scale."""
    meta = (getattr(layer, "metadata", None) or {}).get("napari_xt") or {}
    if meta.get("pixel_size"):
        y, x = meta["pixel_size"][-2:]
        return float(y), float(x)
    sy, sx = (float(v) for v in layer.scale[-2:])
    return None if (sy, sx) == (1.0, 1.0) else (sy, sx)


def synthetic_sample(layer: Any) -> TissueSample | SarSample | None:
    """The synthetic sample behind a layer from our sample data (all its bands: the SAR layer shows only VV)."""
    meta = (getattr(layer, "metadata", None) or {}).get("napari_xt") or {}
    params = meta.get("sample")
    if meta.get("synthetic") not in ("tissue", "sar") or not isinstance(params, dict):
        return None
    from ..synthetic import SarSample, TissueSample

    cls = TissueSample if meta["synthetic"] == "tissue" else SarSample
    size = int(params["size"])
    return cls(size, size, seed=int(params.get("seed", 0)), chunk=int(params.get("chunk", 1024)))


def layer_to_large_image(layer: Any) -> LargeImage:
    """The engine's image for a napari image layer.

    A layer our reader opened is reopened from its file (all bands, e.g. both SAR polarisations, not just the one
    channel this layer shows); any other layer wraps its own (multiscale) arrays, lazily.
    """
    path = layer_path(layer)
    if path is not None:
        return open_image(path)
    sample = synthetic_sample(layer)
    if sample is not None:
        from ..synthetic.image import synthetic_image

        return synthetic_image(sample)
    data = list(layer.data) if getattr(layer, "multiscale", False) else [layer.data]
    rgb = bool(getattr(layer, "rgb", False))
    for level in data:
        if level.ndim != (3 if rgb else 2):
            raise ImageReadError(f"layer {layer.name!r} has {level.ndim} dimensions {tuple(level.shape)}; napari-xt "
                                 "analyses 2D images (grey, multi-band split into layers, or RGB).")
    sources = [ArraySource(level) for level in data]
    meta = (getattr(layer, "metadata", None) or {}).get("napari_xt") or {}
    dtype = sources[0].dtype
    kind = meta.get("kind") or ("brightfield" if rgb and dtype == np.uint8 else "generic")
    units = getattr(layer, "units", None)
    unit = str(units[-1]) if units is not None and len(units) else None
    unit = {"µm": "um", "micrometer": "um", "pixel": None}.get(unit, unit) if unit is not None else None
    return LargeImage(
        f"layer:{layer.name}", list[Source](sources), format="napari-layer", vendor="napari",
        pixel_size=layer_pixel_size(layer), pixel_unit=unit, kind=kind, name_token=uuid.uuid4().hex[:12],
        band_names=["R", "G", "B", "A"][: sources[0].shape[2]] if rgb else None,
    )


def world_to_level0(layer: Any, point: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """A world (y, x) point (e.g. the camera centre) in the layer's level-0 pixels."""
    p = np.asarray(point, dtype=float)[-2:]
    scale = np.asarray(layer.scale, dtype=float)[-2:]
    translate = np.asarray(layer.translate, dtype=float)[-2:]
    y, x = (p - translate) / scale
    return float(y), float(x)


def shapes_to_roi(shapes: Any, image_layer: Any) -> list[tuple[float, float]] | None:
    """The first polygon or rectangle of a Shapes layer as (y, x) vertices in the image's level-0 pixels."""
    for data, kind in zip(shapes.data, shapes.shape_type, strict=False):
        if kind not in ("polygon", "rectangle") or len(data) < 3:
            continue
        verts = np.asarray(data, dtype=float)[:, -2:]
        world = verts * np.asarray(shapes.scale, dtype=float)[-2:] + np.asarray(shapes.translate, dtype=float)[-2:]
        return [world_to_level0(image_layer, v) for v in world]
    return None


def _stem(name: str) -> str:
    low = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def user_cache_dir() -> Path:
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("napari-xt"))
    except ImportError:
        return Path.home() / ".cache" / "napari-xt"


def results_dir(setting: str | os.PathLike | None = None) -> Path:
    """Where the dock writes result stores: the plugin setting when set, else ``$NAPARI_XT_RESULTS``, else napari-xt's
    folder in the user data directory.

    Never beside the image by default: slides often sit on read-only or shared storage, and a run must not fail (or
    litter a shared folder) because of where the image happens to live.
    """
    if setting:
        return Path(os.path.expanduser(os.fspath(setting)))
    env = os.environ.get("NAPARI_XT_RESULTS")
    if env:
        return Path(os.path.expanduser(env))
    try:
        import platformdirs

        return Path(platformdirs.user_data_dir("napari-xt")) / "results"
    except ImportError:
        return Path.home() / ".local" / "share" / "napari-xt" / "results"


def default_store_path(layer: Any, folder: str | os.PathLike | None = None) -> Path:
    """``<results folder>/<image name>.xt.zarr``, never an existing path (``-2``, ``-3``... appended)."""
    path = layer_path(layer)
    if path is not None:
        stem = _stem(Path(path.rstrip("/")).name)
    else:
        stem = re.sub(r"[^\w.-]+", "_", str(getattr(layer, "name", "image"))).strip("_.") or "image"
    return unique_store_path(results_dir(folder) / f"{stem}.xt.zarr")


def unique_store_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing is there, else ``…-2.xt.zarr``, ``…-3.xt.zarr``: a store is never silently replaced."""
    path = Path(path)
    if not path.exists():
        return path
    name = path.name
    base = name[: -len(".xt.zarr")] if name.endswith(".xt.zarr") else Path(name).stem
    suffix = ".xt.zarr" if name.endswith(".xt.zarr") else path.suffix
    base = re.sub(r"-\d+$", "", base)
    i = 2
    while (candidate := path.with_name(f"{base}-{i}{suffix}")).exists():
        i += 1
    return candidate
