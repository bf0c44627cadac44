"""napari reader contribution: one multiscale layer per image, never an exception into the viewer.

Unreadable files return ``None`` (so napari can try another reader) after a warning notification that says why; the
lazy pyramid comes from :func:`napari_xt.io.open_image`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._compat import keep_triton_out_without_cuda
from .engine.store import is_store
from .engine.store_schema import looks_like_store
from .errors import StoreError
from .io import SUPPORTED_SUFFIXES, ImageReadError, LargeImage, open_image

log = logging.getLogger(__name__)

_SUFFIXES = tuple(s for s in SUPPORTED_SUFFIXES if s.count(".") == 1) + (".zarr",)

LayerData = tuple[Any, dict, str]


def _looks_like_ours(path: str) -> bool:
    p = Path(path)
    if p.name.lower().endswith(_SUFFIXES):
        return True
    # DICOM WSI series come as folders of .dcm files
    return p.is_dir() and any(f.suffix.lower() == ".dcm" for f in p.iterdir())


def napari_get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 ``get_reader``: answer only for one path we can actually open."""
    keep_triton_out_without_cuda()  # a store opened here may lead to model code inside napari's GL process
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    path = os.fspath(path)
    if not _looks_like_ours(path):
        return None
    if is_store(path) or looks_like_store(path):  # a damaged store is named as one, not tried as an image
        return _store_reader(path)
    try:
        image = open_image(path)
    except ImageReadError as err:
        _notify(f"napari-xt cannot open this file: {err}")
        return None
    except Exception as err:  # a bug of ours must not become a traceback in the viewer
        log.exception("unexpected error opening %s", path)
        _notify(f"napari-xt failed to open {path}: {err}")
        return None

    def read(_path: Any) -> list[LayerData]:
        return layer_data_for(image)

    return read


def _store_reader(path: str) -> Callable[[Any], list[LayerData]] | None:
    """A result store: its image plus its overlays (see :mod:`napari_xt._store_reader`) and, for a classification
    model, the window-score heat map a live run shows."""
    from ._store_reader import store_layer_data

    try:
        layers, warning = store_layer_data(path, on_damage=lambda err: _notify(f"{err}."))
    except StoreError as err:  # a damaged store is a sentence naming it and its fix, never a traceback
        log.debug("cannot open the result store %s: %s", path, err)
        _notify(f"napari-xt cannot open the result store: {err}.")
        return None
    except Exception as err:  # a bug of ours must not become a traceback in the viewer either
        log.exception("cannot open the result store %s", path)
        _notify(f"napari-xt cannot open the result store {path}: {err}")
        return None
    try:
        layers += heat_map_layers(path, layers)
    except StoreError as err:  # damaged window scores: the image and the other overlays still come
        log.warning("no heat map for %s: %s", path, err)
    except Exception:  # the image and the other overlays still come: a heat map is not worth losing them
        log.exception("cannot rebuild the heat map of %s", path)
    if warning:
        _notify(warning)

    def read(_path: Any) -> list[LayerData]:
        return layers

    return read


def heat_map_layers(path: str, layers: list[LayerData]) -> list[LayerData]:
    """The heat-map layer of the store at ``path`` over its image layer (the first of ``layers``, when it is there),
    painted and placed as the dock paints a live run's (:mod:`napari_xt.app.heatmap`); [] without window scores.

    Only a store with window scores rebuilds its plan (torch-free: the tiling rule is :mod:`napari_xt.tiling`).
    """
    from .app.heatmap import contrast, heat_layer_kwargs, mean_scores, paint, store_layout
    from .engine.store import ResultStore

    store = ResultStore.open(path)
    layout = store_layout(store)
    if layout is None:
        return []
    found = store.image_scores()
    image_scores = found[0] if found is not None and np.isfinite(found[0]).all() else None
    mean = mean_scores(layout.stored, image_scores)
    heat, lut = paint(layout, layout.stored, None if mean is None else int(np.argmax(mean)))
    image = next((kw for _, kw, kind in layers if kind == "image"), None)
    if image is not None:
        scale, translate, units = image.get("scale", (1.0, 1.0)), image.get("translate", (0.0, 0.0)), image.get("units")
    else:  # overlays alone, in the image's level-0 pixels (or its recorded pixel size)
        scale, translate, units = store.meta.get("image_pixel_size") or (1.0, 1.0), (0.0, 0.0), None
    kwargs = heat_layer_kwargs(layout, scale, translate, store.path)
    limits = contrast(lut)
    if limits is not None:
        kwargs["contrast_limits"] = limits[0]
    if units:
        kwargs["units"] = units
    return [(heat, kwargs, "image")]


def layer_data_for(image: LargeImage) -> list[LayerData]:
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


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_warning

        show_warning(message)
    except Exception:  # napari not importable (headless use): the log is enough
        log.warning(message)
