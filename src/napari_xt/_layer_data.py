"""napari layer settings for an image and for a result store's overlays, built in one place.

The napari reader (an image; a store's image, labels and detections: :mod:`napari_xt._store_reader`) and the dock's
live overlays (:mod:`napari_xt.widget._overlays`) draw the same layers, so a store opened from disk looks exactly as
the run that wrote it did: the same colours, scale and centring. No napari, Qt or torch import here: these are
plain layer-data tuples and keyword dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from .palette import rgba

if TYPE_CHECKING:
    from .io import LargeImage

LayerData = tuple[Any, dict, str]


def store_marker(store_path: str | Path) -> dict[str, dict[str, str]]:
    """The layer metadata that ties an overlay to its store (the dock picks Export/Resume up from it)."""
    return {"napari_xt": {"store": str(store_path)}}


def labels_settings(names: Sequence[str], colors: Sequence[Sequence[float]], scale: ArrayLike, translate: ArrayLike,
                    downsample: float, store_path: str | Path) -> dict[str, Any]:
    """Keyword settings of a store's Labels layer over an image layer placed at ``scale``/``translate`` (y, x):
    one analysis pixel covers ``downsample`` image pixels, its centre on theirs; class 0 is transparent."""
    pixel = np.asarray(scale, dtype=float)[-2:]
    colormap: dict[int | None, list[float]] = {None: [0, 0, 0, 0], 0: [0, 0, 0, 0]}
    colormap.update({i: c for i, c in enumerate(rgba(names, colors)) if i > 0})
    return {
        "scale": tuple(pixel * downsample),
        "translate": tuple(np.asarray(translate, dtype=float)[-2:] + (downsample - 1) / 2 * pixel),
        "colormap": colormap, "features": {"class": list(names)}, "metadata": store_marker(store_path),
    }


def detection_points(names: Sequence[str], table: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """A detection table (columns ``y, x, h, w, score, cls``) as Points data (y, x) and its per-point settings:
    size (the box's longer side, at least 4 px), face colour by class (the palette past the background) and the
    ``class``/``score`` features."""
    names = list(names) or ["object"]
    cls = np.clip(np.asarray(table["cls"], dtype=int), 0, len(names) - 1)
    colors = np.asarray(rgba(["bg", *names], [])[1:], dtype=float)
    data = np.stack([np.asarray(table["y"]), np.asarray(table["x"])], axis=1)
    return data, {
        "size": np.maximum(np.maximum(table["h"], table["w"]), 4.0),
        "face_color": colors[cls % len(colors)],
        "features": {"class": np.asarray(names, dtype=object)[cls], "score": table["score"]},
    }


def image_layer_data(image: LargeImage) -> list[LayerData]:
    """Layer tuples for a :class:`LargeImage`: RGB and single-band as one layer, other bands split per channel."""
    channels = image.levels[0].shape[-1]
    rgb = channels in (3, 4) and image.kind in ("brightfield", "generic") and str(image.dtype) == "uint8"
    name = Path(image.path.rstrip("/")).name
    kwargs: dict[str, Any] = {
        "name": name,
        "multiscale": len(image.levels) > 1,
        "metadata": {
            "napari_xt": {
                "path": image.path,
                "kind": image.kind,
                "vendor": image.vendor,
                "format": image.format,
                "pixel_size": image.pixel_size,
                "pixel_unit": image.pixel_unit,
                "band_names": list(image.band_names),
                "tile_size": image.tile_size,
                "crs": image.georef.label if image.georef is not None else None,  # shown with the layer's metadata
            },
        },
    }
    if image.pixel_size is not None:
        kwargs["scale"] = tuple(image.pixel_size)
        if image.pixel_unit:
            unit = "µm" if image.pixel_unit == "um" else image.pixel_unit
            kwargs["units"] = (unit, unit)
    levels = image.levels if kwargs["multiscale"] else image.levels[0]
    if rgb:
        kwargs["rgb"] = True
        return [(levels, kwargs, "image")]
    limits = image.contrast_limits()
    if limits is not None:
        kwargs["contrast_limits"] = tuple(float(v) for v in limits)
    if channels == 1:
        data = [lvl[..., 0] for lvl in image.levels] if kwargs["multiscale"] else image.levels[0][..., 0]
        kwargs["rgb"] = False
        kwargs["colormap"] = "gray"
        return [(data, kwargs, "image")]
    kwargs["channel_axis"] = 2
    kwargs["name"] = [f"{name} [{b}]" for b in image.band_names] if image.band_names else None
    kwargs["rgb"] = False
    kwargs.pop("contrast_limits", None)
    return [(levels, kwargs, "image")]
