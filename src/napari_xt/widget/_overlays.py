"""The layers a run draws into: a Labels layer that *views* the result store, and a Points layer of detections.

The Labels layer's data are the store's zarr pyramid levels, opened read-only: the engine writes a region's pixels
into the store (every level) before the widget hears of it, so showing a region is only a ``refresh()`` (never
``data_setitem``, which would record undo history). Refreshes and detection appends are batched through one
throttle (at most 10 per second), whatever the rate regions finish at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from psygnal import Signal
from superqt.utils import qthrottled

#: used when a checkpoint brings no colours (tab10-like, class 0 is background and stays transparent)
DEFAULT_PALETTE = [
    [0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
]
REFRESH_MS = 100  # <= 10 refreshes per second


def class_colors(names: list[str], colors: list[list[int]]) -> list[list[float]]:
    """RGBA 0..1 per class: the checkpoint's colours, else the default palette (cycled)."""
    out = []
    for i in range(max(len(names), len(colors), 1)):
        c = colors[i] if i < len(colors) else DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]
        rgba = [v / 255 for v in c[:3]] + [c[3] / 255 if len(c) > 3 else 1.0]
        out.append(rgba)
    return out


def open_label_levels(store_path: str | Path) -> list:
    """The store's label pyramid, read-only (a second handle: the writer keeps its own in the worker)."""
    root = Path(store_path) / "labels"
    levels = []
    while (root / str(len(levels)) / "zarr.json").is_file():
        levels.append(zarr.open_array(str(root / str(len(levels))), mode="r"))
    return levels


class Overlays:
    """Creates, feeds and refreshes the overlay layers of one run in ``viewer``."""

    refreshed = Signal(int)  # emitted after each (throttled) refresh with the number of regions shown

    def __init__(self, viewer):
        self.viewer = viewer
        self.labels = None
        self.points = None
        self.n_shown = 0
        self.n_refreshes = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._n_pending = 0
        self._det = {k: np.zeros(0, np.float32) for k in ("y", "x", "h", "w", "score")}
        self._det["cls"] = np.zeros(0, np.int32)
        self._det_colors: list[list[float]] = []
        self._det_names: list[str] = []
        self.min_score = 0.0
        self.flush_throttled = qthrottled(self.flush, timeout=REFRESH_MS, leading=True)

    # -- making the layers ---------------------------------------------------------------------------------------
    def attach(self, store_path, image_layer, info, downsample: float) -> None:
        """Show the store at ``store_path`` over ``image_layer`` (level-0 px per analysis px = ``downsample``)."""
        name = Path(store_path).name
        scale = np.asarray(image_layer.scale, dtype=float)[-2:]
        translate = np.asarray(image_layer.translate, dtype=float)[-2:]
        units = tuple(image_layer.units)[-2:]
        self.n_shown = 0
        self._pending, self._n_pending = [], 0
        levels = open_label_levels(store_path) if "segmentation" in info.tasks else []
        if levels:
            names = info.class_names or [f"class {i}" for i in range(2)]
            rgba = class_colors(names, info.class_colors)
            colormap = {None: [0, 0, 0, 0], 0: [0, 0, 0, 0]}
            colormap.update({i: c for i, c in enumerate(rgba) if i > 0})
            kwargs = {
                "scale": tuple(scale * downsample),
                # an analysis pixel covers `downsample` image pixels: put its centre on theirs
                "translate": tuple(translate + (downsample - 1) / 2 * scale),
                "colormap": colormap, "features": {"class": names},
                "metadata": {"napari_xt": {"store": str(store_path)}},
            }
            data = levels if len(levels) > 1 else levels[0]
            if self._same_store(self.labels, store_path):
                # Resume: reuse the layer (making a Labels layer's visuals costs ~0.3 s of main thread)
                self.labels.data = data
                for key, value in kwargs.items():
                    setattr(self.labels, key, value)
                self.labels.name = f"xT labels [{name}]"
            else:
                self.labels = self.viewer.add_labels(data, multiscale=len(levels) > 1, name=f"xT labels [{name}]",
                                                     opacity=0.5, units=units, **kwargs)
        if "detection" in info.tasks:
            self._det_names = info.detection_names or ["object"]
            self._det_colors = class_colors(["bg", *self._det_names], [])[1:]
            if not self._same_store(self.points, store_path):
                self.points = self.viewer.add_points(
                    np.zeros((0, 2)), name=f"xT detections [{name}]", scale=tuple(scale), translate=tuple(translate),
                    units=units, border_color="white", border_width=0.05, opacity=0.8,
                    features={"class": np.zeros(0, dtype=object), "score": np.zeros(0, np.float32)},
                    metadata={"napari_xt": {"store": str(store_path)}},
                )
            self._det = {k: v[:0] for k, v in self._det.items()}
        self.viewer.layers.selection.active = image_layer

    def _same_store(self, layer, store_path) -> bool:
        return (layer is not None and layer in self.viewer.layers
                and layer.metadata.get("napari_xt", {}).get("store") == str(store_path))

    def load_existing_detections(self, table: dict[str, np.ndarray]) -> None:
        """Detections already in a store being resumed (its finished regions are not re-sent by the engine)."""
        if self.points is not None and table and len(table.get("y", ())):
            self._pending.append({k: np.asarray(v) for k, v in table.items()})
            self.flush()

    # -- feeding ---------------------------------------------------------------------------------------------------
    def add_region(self, payload) -> None:
        """Note one finished region (main thread); the layers catch up on the next throttled flush."""
        self._n_pending += 1
        if payload.detections and len(payload.detections.get("y", ())):
            self._pending.append(payload.detections)
        self.flush_throttled()

    def flush(self) -> None:
        """Refresh the labels and append pending detections now."""
        if self.labels is not None and self._n_pending:
            self.labels.refresh()
        if self.points is not None and self._pending:
            self._append_detections()
        self.n_shown += self._n_pending
        self._n_pending = 0
        self.n_refreshes += 1
        self.refreshed.emit(self.n_shown)

    def _append_detections(self) -> None:
        new = self._pending
        self._pending = []
        for key in self._det:
            parts = [self._det[key]] + [np.asarray(d[key]).astype(self._det[key].dtype) for d in new]
            self._det[key] = np.concatenate(parts)
        d = self._det
        cls = np.clip(d["cls"], 0, len(self._det_names) - 1)
        layer = self.points
        layer.data = np.stack([d["y"], d["x"]], axis=1)
        layer.features = {"class": np.asarray(self._det_names, dtype=object)[cls], "score": d["score"]}
        layer.size = np.maximum(np.maximum(d["h"], d["w"]), 4.0)
        layer.face_color = np.asarray(self._det_colors, dtype=float)[cls % len(self._det_colors)]
        self.set_min_score(self.min_score)

    def set_min_score(self, value: float) -> None:
        """Hide detections scoring below ``value``."""
        self.min_score = float(value)
        if self.points is not None and len(self._det["score"]):
            self.points.shown = self._det["score"] >= self.min_score

    @property
    def n_detections(self) -> int:
        return len(self._det["y"])
