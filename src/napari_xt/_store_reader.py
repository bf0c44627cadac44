"""Open a result store in napari: the image it was made from plus its overlays (labels, detections).

A store made by ``napari-xt predict`` (for example by a batch run on a cluster) is reviewed by opening it like an
image: ``napari slide.xt.zarr -w napari-xt``. The image comes from the path the store records; when the store moved
with its image, a same-named file beside the store is used; when neither exists, the overlays come alone (in level-0
pixel units of the image) with a warning saying which image to open. The layers carry the store path in their
metadata, so the dock picks the store up (Export, Resume).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .engine.store import ResultStore
from .engine.store_check import as_error
from .engine.store_read import CheckedArray
from .errors import StoreDamaged
from .io import ImageReadError, LargeImage, open_image
from .palette import rgba

log = logging.getLogger(__name__)

LayerData = tuple[Any, dict, str]


def find_image(store: ResultStore) -> tuple[LargeImage | None, str]:
    """The store's image (recorded path, else the same name beside the store) and a sentence when not found."""
    recorded = str(store.meta.get("image") or "")
    candidates = [Path(recorded)] if recorded else []
    if recorded:
        candidates.append(store.path.parent / Path(recorded.rstrip("/")).name)
    for path in candidates:
        if path.exists():
            try:
                return open_image(path), ""
            except ImageReadError as err:
                return None, f"the image of {store.path.name} cannot be read: {err}"
    where = recorded or "(no path recorded)"
    return None, (f"the image of {store.path.name} is not at {where} nor beside the store; the overlays are shown "
                  "alone: open the image too, or move it beside the store")


def store_layer_data(path: str | Path, on_damage: Callable[[StoreDamaged], None] | None = None,
                     ) -> tuple[list[LayerData], str]:
    """Layer tuples for the store at ``path`` (image first) and a warning sentence ("" when all was found).

    A store whose layout is damaged raises :class:`StoreDamaged` (before anything is read); done regions whose
    chunk files are missing are shown as background with a warning naming them; a chunk that cannot be decoded is
    reported once through ``on_damage`` (a viewer) and shown as background (without: raised when it is read).
    """
    from ._reader import layer_data_for

    store = ResultStore.open(path)
    damages = store.damage()
    image, warning = find_image(store)
    layers: list[LayerData] = layer_data_for(image) if image is not None else []
    pixel = np.asarray(image.pixel_size if image is not None and image.pixel_size else
                       (store.meta.get("image_pixel_size") or (1.0, 1.0)), dtype=float)[-2:]
    marker = {"napari_xt": {"store": str(store.path)}}
    name = store.path.name
    if store.labels:
        f = float(store.spec.downsample_to_level0)
        names = list(store.spec.class_names) or [f"class {i}" for i in range(max(2, store.spec.num_classes))]
        colors = rgba(names, store.spec.class_colors)
        colormap: dict[int | None, list[float]] = {None: [0, 0, 0, 0], 0: [0, 0, 0, 0]}
        colormap.update({i: c for i, c in enumerate(colors) if i > 0})
        levels = [CheckedArray(a.array, store.path, a.part, on_damage) for a in store.labels]
        data = levels if len(levels) > 1 else levels[0]
        layers.append((data, {
            "name": f"xT labels [{name}]", "multiscale": len(store.labels) > 1, "opacity": 0.5,
            "scale": tuple(pixel * f), "translate": tuple((f - 1) / 2 * pixel), "colormap": colormap,
            "features": {"class": names}, "metadata": marker,
        }, "labels"))
    table = store.detections()
    if len(table.get("y", ())):
        det_names = list((store.meta.get("model_config") or {}).get("class_names", {}).get("detection", [])) \
            or ["object"]
        cls = np.clip(np.asarray(table["cls"], dtype=int), 0, len(det_names) - 1)
        det_colors = rgba(["bg", *det_names], [])[1:]
        layers.append((np.stack([table["y"], table["x"]], axis=1), {
            "name": f"xT detections [{name}]", "scale": tuple(pixel), "metadata": marker,
            "size": np.maximum(np.maximum(table["h"], table["w"]), 4.0), "border_color": "white",
            "face_color": np.asarray(det_colors, dtype=float)[cls % len(det_colors)], "opacity": 0.8,
            "features": {"class": np.asarray(det_names, dtype=object)[cls], "score": table["score"]},
        }, "points"))
    if damages:
        hurt = f"{as_error(store.path, damages)} (`napari-xt verify` lists it); what is lost is shown as background"
        warning = f"{warning}. {hurt}" if warning else hurt
    elif not store.complete:
        partial = f"{name} is not complete ({store.n_done} of {store.spec.region_count} regions); Resume continues it."
        warning = f"{warning}. {partial}" if warning else partial
    return layers, warning
