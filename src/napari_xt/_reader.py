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

from ._compat import keep_triton_out_without_cuda
from ._layer_data import LayerData, image_layer_data
from ._store_reader import heat_map_layers, store_layer_data
from .errors import StoreError
from .io import SUPPORTED_SUFFIXES, ImageReadError, open_image
from .store import is_store, looks_like_store

log = logging.getLogger(__name__)

_SUFFIXES = tuple(s for s in SUPPORTED_SUFFIXES if s.count(".") == 1) + (".zarr",)


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
        return image_layer_data(image)

    return read


def _store_reader(path: str) -> Callable[[Any], list[LayerData]] | None:
    """A result store: its image plus its overlays (see :mod:`napari_xt._store_reader`) and, for a classification
    model, the window-score heat map a live run shows."""
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


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_warning

        show_warning(message)
    except Exception:  # napari not importable (headless use): the log is enough
        log.warning(message)
