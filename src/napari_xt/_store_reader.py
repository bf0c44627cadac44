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

import numpy as np

from ._layer_data import LayerData, detection_points, image_layer_data, labels_settings, store_marker
from .errors import StoreDamaged
from .io import ImageReadError, LargeImage, open_image
from .store import ResultStore
from .store.check import as_error
from .store.read import CheckedArray

log = logging.getLogger(__name__)


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
    store = ResultStore.open(path)
    damages = store.damage()
    image, warning = find_image(store)
    layers: list[LayerData] = image_layer_data(image) if image is not None else []
    pixel = np.asarray(image.pixel_size if image is not None and image.pixel_size else
                       (store.meta.get("image_pixel_size") or (1.0, 1.0)), dtype=float)[-2:]
    name = store.path.name
    if store.labels:
        names = list(store.spec.class_names) or [f"class {i}" for i in range(max(2, store.spec.num_classes))]
        levels = [CheckedArray(a.array, store.path, a.part, on_damage) for a in store.labels]
        data = levels if len(levels) > 1 else levels[0]
        settings = labels_settings(names, store.spec.class_colors, pixel, (0.0, 0.0),
                                   float(store.spec.downsample_to_level0), store.path)
        layers.append((data, {"name": f"xT labels [{name}]", "multiscale": len(store.labels) > 1, "opacity": 0.5,
                              **settings}, "labels"))
    table = store.detections()
    if len(table.get("y", ())):
        det_names = list((store.meta.get("model_config") or {}).get("class_names", {}).get("detection", [])) \
            or ["object"]
        points, style = detection_points(det_names, table)
        layers.append((points, {"name": f"xT detections [{name}]", "scale": tuple(pixel),
                                "metadata": store_marker(store.path), "border_color": "white", "opacity": 0.8,
                                **style}, "points"))
    if damages:
        hurt = f"{as_error(store.path, damages)} (`napari-xt verify` lists it); what is lost is shown as background"
        warning = f"{warning}. {hurt}" if warning else hurt
    elif not store.complete:
        partial = f"{name} is not complete ({store.n_done} of {store.spec.region_count} regions); Resume continues it."
        warning = f"{warning}. {partial}" if warning else partial
    return layers, warning


def heat_map_layers(path: str, layers: list[LayerData]) -> list[LayerData]:
    """The heat-map layer of the store at ``path`` over its image layer (the first of ``layers``, when it is there),
    painted and placed as the dock paints a live run's (:mod:`napari_xt.app.heatmap`); [] without window scores.

    Only a store with window scores rebuilds its plan (torch-free: the tiling rule is :mod:`napari_xt.tiling`).
    """
    from .app.heatmap import contrast, heat_layer_kwargs, mean_scores, paint, store_layout

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
