"""The layers a run draws into: a Labels layer that *views* the result store, a Points layer of detections, and the
window-score heat map of classification heads (``_scores.py``).

The Labels layer's data are the store's zarr pyramid levels, opened read-only: the engine writes a region's pixels
into the store (every level) before the widget hears of it, so showing a region is only re-reading its box into the
displayed tile (``_partial.py``; never ``data_setitem``, which would record undo history). Those updates and
detection appends are batched through one throttle (at most 10 per second), whatever the rate regions finish at; so
are heat-map repaints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from psygnal import Signal
from superqt.utils import qthrottled

from ..app.events import RegionDone, WindowScored
from ._colors import class_colors
from ._partial import show_regions
from ._scores import ScoreMap

REFRESH_MS = 100  # <= 10 refreshes per second


def open_label_levels(store_path: str | Path) -> list:
    """The store's label pyramid, read-only (a second handle: the writer keeps its own in the worker)."""
    root = Path(store_path) / "labels"
    levels: list = []
    while (root / str(len(levels)) / "zarr.json").is_file():
        levels.append(zarr.open_array(str(root / str(len(levels))), mode="r"))
    return levels


def _view_whole_level(layer) -> None:
    """After a data swap, slice the whole current level, as a new layer would (napari keeps the old view's corner
    pixels until the canvas next draws, which a hidden viewer never does)."""
    corners = np.zeros((2, layer.ndim), dtype=int)
    corners[1] = np.asarray(layer.level_shapes[layer.data_level]) - 1
    layer.corner_pixels = corners
    layer.refresh()


class Overlays:
    """Creates, feeds and refreshes the overlay layers of one run in ``viewer``."""

    refreshed = Signal(int)  # emitted after each (throttled) refresh with the number of regions shown

    def __init__(self, viewer):
        self.viewer = viewer
        self.labels = None
        self.points = None
        self._reserved = None  # a Labels layer made at Run, not attached to its store yet
        self.n_shown = 0
        self.n_refreshes = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._n_pending = 0
        self._cores: list[tuple[int, int, int, int]] = []  # regions finished since the last flush (store px)
        self.n_full_refreshes = 0
        self._det = {k: np.zeros(0, np.float32) for k in ("y", "x", "h", "w", "score")}
        self._det["cls"] = np.zeros(0, np.int32)
        self._det_colors: list[list[float]] = []
        self._det_names: list[str] = []
        self.min_score = 0.0
        self.scores = ScoreMap(viewer)
        self.flush_throttled = qthrottled(self.flush, timeout=REFRESH_MS, leading=True)

    # -- making the layers ---------------------------------------------------------------------------------------
    def reserve(self, store_path, image_layer, info) -> None:
        """Make the run's Labels layer now, at Run, while the worker opens the image and loads the model.

        napari spends ~0.3-0.5 s of main thread building a Labels layer's visuals and drawing it the first time
        (measured in ``benchmarks/bench_widget.py``). Paid here it overlaps the worker's preparation instead of
        delaying the first region; ``attach`` then only swaps in the store's pyramid.
        """
        if "segmentation" not in info.tasks or self._find("labels", store_path) is not None:
            return
        self.release()
        tiny = [np.zeros((2, 2), np.uint8), np.zeros((1, 1), np.uint8)]  # multiscale needs two levels
        self.labels = self._reserved = self.viewer.add_labels(
            tiny, multiscale=True, name=f"xT labels [{Path(store_path).name}]", opacity=0.5,
            scale=tuple(image_layer.scale[-2:]), translate=tuple(image_layer.translate[-2:]),
            units=tuple(image_layer.units)[-2:], metadata={"napari_xt": {"store": str(store_path)}},
        )
        self.viewer.layers.selection.active = image_layer

    def release(self) -> None:
        """Remove the layer reserved for a run that never started (bad input, cancelled while preparing)."""
        layer, self._reserved = self._reserved, None
        if layer is not None:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            if self.labels is layer:
                self.labels = None

    def attach(self, store_path, image_layer, info, downsample: float, layout=None) -> None:
        """Show the store at ``store_path`` over ``image_layer`` (level-0 px per analysis px = ``downsample``);
        ``layout`` (a ScoreLayout) adds the window-score heat map of a classification head."""
        name = Path(store_path).name
        scale = np.asarray(image_layer.scale, dtype=float)[-2:]
        translate = np.asarray(image_layer.translate, dtype=float)[-2:]
        units = tuple(image_layer.units)[-2:]
        self.n_shown = 0
        self._pending, self._n_pending, self._cores = [], 0, []
        levels = open_label_levels(store_path) if "segmentation" in info.tasks else []
        if levels:
            names = info.class_names or [f"class {i}" for i in range(2)]
            rgba = class_colors(names, info.class_colors)
            colormap: dict[int | None, list[float]] = {None: [0, 0, 0, 0], 0: [0, 0, 0, 0]}
            colormap.update({i: c for i, c in enumerate(rgba) if i > 0})
            kwargs = {
                "scale": tuple(scale * downsample),
                # an analysis pixel covers `downsample` image pixels: put its centre on theirs
                "translate": tuple(translate + (downsample - 1) / 2 * scale),
                "colormap": colormap, "features": {"class": names},
                "metadata": {"napari_xt": {"store": str(store_path)}},
            }
            multiscale = len(levels) > 1
            data = levels if multiscale else levels[0]
            layer = self._find("labels", store_path)
            if layer is not None and layer.multiscale == multiscale:
                # reserved at Run, or Resume: reuse the layer (building a Labels layer's visuals is the slow part)
                layer.data = data
                for key, value in kwargs.items():
                    setattr(layer, key, value)
                layer.name = f"xT labels [{name}]"
                _view_whole_level(layer)
                self.labels = layer
            else:
                if layer is not None:  # a one-level store does not fit the two-level reserved layer
                    self.viewer.layers.remove(layer)
                self.labels = self.viewer.add_labels(data, multiscale=multiscale, name=f"xT labels [{name}]",
                                                     opacity=0.5, units=units, **kwargs)
        self._reserved = None
        if "detection" in info.tasks:
            self._det_names = info.detection_names or ["object"]
            self._det_colors = class_colors(["bg", *self._det_names], [])[1:]
            self.points = self._find("points", store_path)
            if self.points is None:
                self.points = self.viewer.add_points(
                    np.zeros((0, 2)), name=f"xT detections [{name}]", scale=tuple(scale), translate=tuple(translate),
                    units=units, border_color="white", border_width=0.05, opacity=0.8,
                    features={"class": np.zeros(0, dtype=object), "score": np.zeros(0, np.float32)},
                    metadata={"napari_xt": {"store": str(store_path)}},
                )
            self._det = {k: v[:0] for k, v in self._det.items()}
        if layout is not None:
            self.scores.attach(layout, image_layer, store_path)
        self.viewer.layers.selection.active = image_layer

    def _find(self, kind: str, store_path):
        """The viewer's overlay layer of ``kind`` ("labels" | "points") showing ``store_path``, if any."""
        for layer in self.viewer.layers:
            if (type(layer).__name__.lower() == kind
                    and layer.metadata.get("napari_xt", {}).get("store") == str(store_path)):
                return layer
        return None

    def load_existing_detections(self, table: dict[str, np.ndarray]) -> None:
        """Detections already in a store being resumed (its finished regions are not re-sent by the engine)."""
        if self.points is not None and table and len(table.get("y", ())):
            self._pending.append({k: np.asarray(v) for k, v in table.items()})
            self.flush()

    # -- feeding ---------------------------------------------------------------------------------------------------
    def add_region(self, payload: RegionDone) -> None:
        """Note one finished region (main thread); the layers catch up on the next throttled flush."""
        self._n_pending += 1
        self._cores.append(payload.core)
        if payload.detections is not None and len(payload.detections):
            self._pending.append(payload.detections.as_table())
        self.flush_throttled()

    def add_window(self, payload: WindowScored) -> None:
        """Note one scored context window (main thread); the heat map catches up on the next throttled flush."""
        self.scores.add(payload)
        self.flush_throttled()

    def flush(self, full: bool = False) -> None:
        """Show the labels of the regions finished since the last flush (only their boxes are re-read and uploaded,
        unless ``full``), append pending detections and repaint the heat map now."""
        cores, self._cores = self._cores, []
        labels = self.labels
        if labels is not None and (self._n_pending or full) and (full or not show_regions(labels, cores)):
            labels.refresh()
            self.n_full_refreshes += 1
        if self.points is not None and self._pending:
            self._append_detections()
        self.scores.flush()
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
