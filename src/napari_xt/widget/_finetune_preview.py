"""The Fine-tune tab's prediction overlay: the model just trained, run on the regions in view, as a Labels layer
(segmentation) and a Points layer (detection: each object at its centre, sized as the model measured it).

The interactive loop (paint → Train → see → correct → Train again) needs the new model's answer where the user is
looking, without pressing Run. The worker side is ``app.finetune.preview_events`` (the one run driver with the plan
restricted to the view); here the main thread only measures the view, and shows the preview store through one
Labels layer that is reused from one training to the next (building a Labels layer's visuals is the slow part),
refreshed at most 10 times a second. The previous preview store is deleted once the layer shows the new one.

The layer's metadata deliberately carry no ``store`` key: the Run tab adopts any layer naming a store as its
Results, and a throw-away preview must not become the user's result store.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from superqt.utils import qthrottled

from .._layer_data import labels_settings
from ..app.layers import world_to_level0
from ..app.previews import discard_preview
from ._fields import camera, camera_center
from ._overlays import open_label_levels

if TYPE_CHECKING:
    from ..app.finetune import PreviewReady

PREVIEW_NAME = "xT preview"
DETECTIONS_NAME = "xT preview detections"


def canvas_size(viewer: Any) -> tuple[float, float]:
    """(height, width) of the canvas in screen px (napari >= 0.9: ``viewer.canvas.size``; before: private)."""
    size = getattr(getattr(viewer, "canvas", None), "size", None)
    if size is None:
        size = getattr(viewer, "_canvas_size", None)
    if size is None or min(size) <= 0:
        return (600.0, 800.0)
    return (float(size[0]), float(size[1]))


def visible_box(viewer: Any, image_layer: Any) -> tuple[float, float, float, float]:
    """The canvas's visible extent in ``image_layer``'s level-0 px (y0, x0, y1, x1), from the camera's centre and
    zoom (screen px per world unit) and the canvas size: what the user sees, whatever is loaded."""
    centre = camera_center(viewer)
    zoom = float(camera(viewer).zoom) or 1.0
    half = np.asarray(canvas_size(viewer)) / 2 / zoom
    (ay, ax), (by, bx) = world_to_level0(image_layer, centre - half), world_to_level0(image_layer, centre + half)
    return (min(ay, by), min(ax, bx), max(ay, by), max(ax, bx))


class PreviewOverlay:
    """One Labels layer, named "xT preview", viewing the latest preview store."""

    def __init__(self, viewer: Any):
        self.viewer = viewer
        self.layer: Any = None
        self.store: str | None = None
        self.regions_shown = 0
        self.first_shown_at: float | None = None  # perf_counter of the first region shown (benchmarks read it)
        self.refresh = qthrottled(self._refresh, timeout=100, leading=True)
        self.points: Any = None  # the detections' Points layer (detection models)
        self._found: list[Any] = []  # this preview's detections so far (app.events.Detections per region)
        self._image_layer: Any = None

    def show(self, info: PreviewReady, image_layer: Any) -> None:
        """Point the layer at the store in ``info`` (the first event of ``app.finetune.preview_events``)."""
        self._found, self._image_layer = [], image_layer
        if info.detection:
            self._show_points(image_layer)
        levels = open_label_levels(info.store)
        if not levels:  # a detection-only model: its objects are the preview
            old, self.store = self.store, info.store
            self.regions_shown, self.first_shown_at = 0, None
            if old and old != self.store:
                discard_preview(old)
            return
        f = float(info.downsample)
        names = info.class_names or [f"class {i}" for i in range(2)]
        kwargs = labels_settings(names, info.class_colors or [], image_layer.scale, image_layer.translate, f,
                                 info.store)
        del kwargs["features"]
        kwargs["metadata"] = {"napari_xt": {"preview_store": info.store}}  # a preview, not a result store
        multiscale = len(levels) > 1
        data = levels if multiscale else levels[0]
        old, self.store = self.store, info.store
        self.regions_shown, self.first_shown_at = 0, None
        layer = self.layer if self.layer is not None and self.layer in self.viewer.layers else None
        if layer is not None and layer.multiscale == multiscale:
            layer.data = data
            for key, value in kwargs.items():
                setattr(layer, key, value)
            layer.refresh()
        else:
            if layer is not None:
                self.viewer.layers.remove(layer)
            active = self.viewer.layers.selection.active
            self.layer = self.viewer.add_labels(data, multiscale=multiscale, name=PREVIEW_NAME, opacity=0.5,
                                                units=tuple(image_layer.units)[-2:], **kwargs)
            if active is not None:  # keep the user's tool on the layer they were painting
                self.viewer.layers.selection.active = active
        if old and old != self.store:
            discard_preview(old)

    def _show_points(self, image_layer: Any) -> None:
        """An empty Points layer over the image (reused from one Train to the next), filled as regions finish."""
        kwargs = {"scale": tuple(np.asarray(image_layer.scale, dtype=float)[-2:]),
                  "translate": tuple(np.asarray(image_layer.translate, dtype=float)[-2:])}
        if self.points is not None and self.points in self.viewer.layers:
            self.points.data = np.zeros((0, 2))
            for key, value in kwargs.items():
                setattr(self.points, key, value)
            return
        active = self.viewer.layers.selection.active
        self.points = self.viewer.add_points(np.zeros((0, 2)), name=DETECTIONS_NAME, face_color="transparent",
                                             border_color="yellow", border_width=0.1, size=10, **kwargs)
        if active is not None:
            self.viewer.layers.selection.active = active

    def region_done(self, detections: Any = None) -> None:
        if detections is not None and len(detections):
            self._found.append(detections)
        self.regions_shown += 1
        if self.first_shown_at is None:
            self._refresh()  # the first region at once: it is what the user waits for
            self.first_shown_at = time.perf_counter()
        else:
            self.refresh()

    def _refresh(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers and self.store is not None:
            self.layer.refresh()
        if self.points is not None and self.points in self.viewer.layers and self._found:
            y = np.concatenate([d.y for d in self._found])
            x = np.concatenate([d.x for d in self._found])
            size = np.concatenate([np.sqrt(np.maximum(d.h * d.w, 0)) for d in self._found])
            self.points.data = np.stack([y, x], 1)
            self.points.size = np.where(size > 0, size, 10.0)
