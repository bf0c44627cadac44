"""The layers a run draws into: a Labels layer that *views* the result store, a Points layer of detections, and the
window-score heat map of classification heads (``_scores.py``).

The Labels layer's data are the store's zarr pyramid levels, opened read-only: the engine writes a region's pixels
into the store (every level) before the widget hears of it, so showing a region is only re-reading its box into the
displayed tile (``_partial.py``; never ``data_setitem``, which would record undo history). Those updates and
detection appends are batched through one throttle (at most 10 per second), whatever the rate regions finish at; so
are heat-map repaints.

The box of a refresh is read from the store in a background thread (``_partial.BoxReader``, one read at a time) and
put into the displayed tile on the main thread when it arrives: the main thread does no store read while regions
stream in. Regions that finish while a read is in flight wait for the next one (in order, none lost); a read whose
tile napari has re-sliced meanwhile is read again for the new tile; the final full refresh (``flush(full=True)``)
drops the read in flight and joins its thread, as do a new store (``attach``) and a removed layer.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import zarr
from psygnal import Signal
from qtpy.QtCore import QTimer
from superqt.utils import qthrottled

from .._layer_data import detection_points, labels_settings, store_marker
from ..app.events import RegionDone, WindowScored
from ._partial import BoxReader, Plan, apply_boxes, plan_regions, tile_changed
from ._scores import ScoreMap
from ._staged_layer import StagedLayer, unwrapped

REFRESH_MS = 100  # <= 10 refreshes per second
VIEW_AFTER_MS = 40  # the store's first slice, a turn after attaching it


def open_label_levels(store_path: str | Path) -> list:
    """The store's label pyramid, read-only (a second handle: the writer keeps its own in the worker)."""
    root = Path(store_path) / "labels"
    levels: list = []
    while (root / str(len(levels)) / "zarr.json").is_file():
        levels.append(zarr.open_array(str(root / str(len(levels))), mode="r"))
    return levels


def _view_whole_level(layer) -> None:
    """After a data swap, slice the whole current level, as a new layer would (napari keeps the old view's corner
    pixels until the canvas next draws, which a hidden viewer never does).

    Without the layer-list thumbnail: napari makes it with a scipy zoom of the displayed tile (tens of ms at the
    run's start, a 100,000 px slide's; issue 25), the store is empty then, and the run's last full refresh makes it.
    """
    corners = np.zeros((2, layer.ndim), dtype=int)
    corners[1] = np.asarray(layer.level_shapes[layer.data_level]) - 1
    layer.corner_pixels = corners
    try:
        layer.refresh(thumbnail=False)
    except TypeError:  # a napari whose refresh() takes no such option
        layer.refresh()


@contextlib.contextmanager
def _one_update(viewer, layer):
    """Give ``layer`` new data, scale and translate with one re-slice and one update of the viewer and the visual.

    Each of the three setters alone makes napari re-slice the layer, recompute the viewer's dims from every layer's
    extent (``ViewerModel._on_layers_change``) and, for scale and translate, the visual's transform: 5-7 ms apiece at
    the run's start (bench_widget.py's demo; issue 25). Blocked: the re-slices (napari's private ``_block_refresh``),
    the viewer's dims update on the data event, and every listener of the scale and translate events; one translate
    event at the end updates the viewer, the visual and the layer list from the whole new transform (napari's own
    listeners of scale and translate are the same ones). A napari without ``_block_refresh`` re-slices each time."""
    refresh = getattr(layer, "_block_refresh", None)
    dims = getattr(viewer, "_on_layers_change", None)
    with refresh() if refresh is not None else contextlib.nullcontext():
        with contextlib.ExitStack() as stack:
            if dims is not None:
                layer.events.data.block(dims)
                stack.callback(layer.events.data.unblock, dims)
            stack.enter_context(layer.events.scale.blocker())
            stack.enter_context(layer.events.translate.blocker())
            yield
        layer.events.translate()  # one event: its listeners read the whole transform (and the viewer every extent)


class Overlays:
    """Creates, feeds and refreshes the overlay layers of one run in ``viewer``."""

    refreshed = Signal(int)  # emitted after each (throttled) refresh with the number of regions shown

    def __init__(self, viewer):
        # the viewer itself, not the proxy napari hands a plugin's dock: the proxy's layer list returns a new proxy
        # per look-up, and the layers found here are compared by identity (the reserved layer, the layer being read)
        self.viewer = unwrapped(viewer)
        self.labels = None
        self.points = None
        self._reserved = None  # a Labels layer made at Run, not attached to its store yet
        self._staged: StagedLayer | None = None  # how far the reserved layer got into the viewer
        self._view_pending = None  # the labels layer given the store's levels, not sliced from them yet
        self.n_shown = 0
        self.n_refreshes = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._cores: list[tuple[int, int, int, int]] = []  # regions finished, not read yet (store px)
        self._reading: list[tuple[int, int, int, int]] = []  # the regions of the read in flight
        self._reader = BoxReader(self._on_read)
        self.n_full_refreshes = 0
        self._det = {k: np.zeros(0, np.float32) for k in ("y", "x", "h", "w", "score")}
        self._det["cls"] = np.zeros(0, np.int32)
        self._det_names: list[str] = []
        self.min_score = 0.0
        self.scores = ScoreMap(viewer)
        self.flush_throttled = qthrottled(self.flush, timeout=REFRESH_MS, leading=True)

    # -- making the layers ---------------------------------------------------------------------------------------
    def reserve(self, store_path, image_layer, info) -> None:
        """Make the run's Labels layer now, at Run, while the worker opens the image and loads the model.

        napari spends 120-170 ms of main thread building a Labels layer's visuals and drawing it the first time
        (measured in ``benchmarks/bench_widget.py``). Paid here it overlaps the worker's preparation instead of
        delaying the first region, and it is paid in steps of a few tens of ms, one per event-loop turn
        (``_staged_layer.py``), so the viewer keeps answering; ``attach`` then only swaps in the store's pyramid.
        """
        if "segmentation" not in info.tasks or self._find("labels", store_path) is not None:
            return
        self.release()
        from napari.layers import Labels

        tiny = [np.zeros((2, 2), np.uint8), np.zeros((1, 1), np.uint8)]  # multiscale needs two levels
        # the classes' colours now: each setting changed later re-slices the layer (7-20 ms each, in attach)
        colours = {key: value for key, value in self._labels_settings(info, image_layer, 1.0, store_path).items()
                   if key in ("colormap", "features")}
        self.labels = self._reserved = Labels(
            tiny, multiscale=True, name=f"xT labels [{Path(store_path).name}]", opacity=0.5,
            scale=tuple(image_layer.scale[-2:]), translate=tuple(image_layer.translate[-2:]),
            units=tuple(image_layer.units)[-2:], metadata=store_marker(store_path), **colours,
        )
        self._staged = StagedLayer(self.viewer, self._reserved)

    def release(self) -> None:
        """Remove the layer reserved for a run that never started (bad input, cancelled while preparing)."""
        layer, self._reserved = self._reserved, None
        staged, self._staged = self._staged, None
        if layer is not None:
            self._stop_reading()
            if staged is not None:
                staged.cancel()
            elif layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            if self.labels is layer:
                self.labels = None

    def attach(self, store_path, image_layer, info, downsample: float, layout=None, levels=None) -> None:
        """Show the store at ``store_path`` over ``image_layer`` (level-0 px per analysis px = ``downsample``);
        ``layout`` (a ScoreLayout) adds the window-score heat map of a classification head; ``levels``: the store's
        label pyramid when already opened (:func:`open_label_levels`, off the main thread)."""
        name = Path(store_path).name
        scale = np.asarray(image_layer.scale, dtype=float)[-2:]
        translate = np.asarray(image_layer.translate, dtype=float)[-2:]
        units = tuple(image_layer.units)[-2:]
        self._stop_reading()
        self._view_pending = None
        if self._staged is not None:  # prepared before the reserved layer was in: put it in now
            self._staged.finish()
            self._staged = None
        self.n_shown = 0
        self._pending, self._cores, self._reading = [], [], []
        if "segmentation" not in info.tasks:
            levels = []
        elif not levels:
            levels = open_label_levels(store_path)
        if levels:
            kwargs = self._labels_settings(info, image_layer, downsample, store_path)
            multiscale = len(levels) > 1
            data = levels if multiscale else levels[0]
            layer = self._find("labels", store_path)
            if layer is not None and layer.multiscale == multiscale:
                # reserved at Run, or Resume: reuse the layer (building a Labels layer's visuals is the slow part),
                # its new data and placement given in one update (see _one_update)
                with _one_update(self.viewer, layer):
                    layer.data = data
                    for key, value in kwargs.items():
                        if not (layer is self._reserved and key in ("colormap", "features", "metadata")):  # at Run
                            setattr(layer, key, value)
                    layer.name = f"xT labels [{name}]"
                self.labels = self._view_pending = layer
                # the first slice and draw of the store a turn later: in this turn the run starts (and the window
                # repaints), each of the two was half of one 70-90 ms stall (bench_widget.py; issue 25)
                QTimer.singleShot(VIEW_AFTER_MS, self._show_store)
            else:
                if layer is not None:  # a one-level store does not fit the two-level reserved layer
                    self.viewer.layers.remove(layer)
                self.labels = self.viewer.add_labels(data, multiscale=multiscale, name=f"xT labels [{name}]",
                                                     opacity=0.5, units=units, **kwargs)
        self._reserved = None
        if "detection" in info.tasks:
            self._det_names = info.detection_names or ["object"]
            self.points = self._find("points", store_path)
            if self.points is None:
                self.points = self.viewer.add_points(
                    np.zeros((0, 2)), name=f"xT detections [{name}]", scale=tuple(scale), translate=tuple(translate),
                    units=units, border_color="white", border_width=0.05, opacity=0.8,
                    features={"class": np.zeros(0, dtype=object), "score": np.zeros(0, np.float32)},
                    metadata=store_marker(store_path),
                )
            self._det = {k: v[:0] for k, v in self._det.items()}
        if layout is not None:
            self.scores.attach(layout, image_layer, store_path)
        self.viewer.layers.selection.active = image_layer

    @staticmethod
    def _labels_settings(info, image_layer, downsample: float, store_path) -> dict:
        names = info.class_names or [f"class {i}" for i in range(2)]
        return labels_settings(names, info.class_colors, image_layer.scale, image_layer.translate, downsample,
                               store_path)

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

    def _show_store(self) -> None:
        """The first slice of the store's levels (after ``attach``); regions that finished meanwhile show now."""
        layer, self._view_pending = self._view_pending, None
        if layer is None or layer is not self.labels or layer not in self.viewer.layers:
            return
        _view_whole_level(layer)
        if self._cores:
            self.flush()

    # -- feeding ---------------------------------------------------------------------------------------------------
    def add_region(self, payload: RegionDone) -> None:
        """Note one finished region (main thread); the layers catch up on the next throttled flush."""
        self._cores.append(payload.core)
        if payload.detections is not None and len(payload.detections):
            self._pending.append(payload.detections.as_table())
        self.flush_throttled()

    def add_window(self, payload: WindowScored) -> None:
        """Note one scored context window (main thread); the heat map catches up on the next throttled flush."""
        self.scores.add(payload)
        self.flush_throttled()

    @property
    def reading(self) -> bool:
        """A box of labels is being read from the store in the background."""
        return self._reader.busy

    def flush(self, full: bool = False) -> None:
        """Append pending detections and repaint the heat map now; start reading the boxes of the regions finished
        since the last flush (they show when the read arrives, unless one is in flight: then after it), or, when
        ``full``, drop any read in flight and refresh the whole labels layer here."""
        labels = self.labels
        if labels is not None and labels not in self.viewer.layers:  # removed by the user: nothing to show it in
            self._stop_reading()
            labels = None
        if self._view_pending is not None:
            if full:  # the run ended before the store's first slice: slice it now (the refresh below shows all)
                pending, self._view_pending = self._view_pending, None
                if pending is labels:
                    _view_whole_level(pending)
            else:
                labels = None  # not sliced from the store yet: its regions wait (in ``_cores``) for that turn
        if full:
            self._stop_reading()  # its regions are in what the refresh reads
            n_new, self._cores = len(self._cores), []
            if labels is not None:
                labels.refresh()
                self.n_full_refreshes += 1
        elif labels is None:
            n_new = 0
            if self._view_pending is None:
                n_new, self._cores = len(self._cores), []
        else:
            n_new = self._read_labels(labels)
        if self.points is not None and self._pending:
            self._append_detections()
        self.scores.flush()
        self.n_shown += n_new
        self.n_refreshes += 1
        self.refreshed.emit(self.n_shown)

    def _read_labels(self, labels) -> int:
        """Start the background read of the finished regions' boxes; the number of regions shown at once (none in
        view, or a whole-layer refresh where the partial update does not apply)."""
        if not self._cores or self._reader.busy:
            return 0  # nothing new, or it waits for the read in flight (``_on_read`` flushes again)
        cores, self._cores = self._cores, []
        plan = plan_regions(labels, cores)
        if plan is None:  # not a layer state the partial update understands: whole-layer refresh (reads here)
            labels.refresh()
            self.n_full_refreshes += 1
            return len(cores)
        if not plan.boxes:  # all outside the view: napari reads them when the view moves there
            return len(cores)
        self._reading = cores
        self._reader.start(plan)
        return 0

    def _on_read(self, plan: Plan, blocks: list[np.ndarray] | None, error: BaseException | None) -> None:
        """Main thread: a background read arrived; put it into the displayed tile."""
        cores, self._reading = self._reading, []
        layer = plan.layer
        if layer is self.labels and layer in self.viewer.layers:  # else removed by the user meanwhile
            if blocks is not None and tile_changed(plan):
                self._cores = cores + self._cores  # napari re-sliced meanwhile: read them again for its new tile
                cores = []
            elif blocks is None or not apply_boxes(plan, blocks):
                layer.refresh()  # the read failed, or napari's internals are not as expected
                self.n_full_refreshes += 1
        self.n_shown += len(cores)
        self.n_refreshes += 1
        self.refreshed.emit(self.n_shown)
        if self._cores:
            self.flush_throttled()

    def _stop_reading(self) -> None:
        """Drop the read in flight (its regions wait again) and join its thread (at most one read's time)."""
        self._reader.cancel()
        self._reader.wait()
        self._cores, self._reading = self._reading + self._cores, []

    def _append_detections(self) -> None:
        new = self._pending
        self._pending = []
        for key in self._det:
            parts = [self._det[key]] + [np.asarray(d[key]).astype(self._det[key].dtype) for d in new]
            self._det[key] = np.concatenate(parts)
        data, style = detection_points(self._det_names, self._det)
        layer = self.points
        layer.data = data
        layer.features = style["features"]
        layer.size = style["size"]
        layer.face_color = style["face_color"]
        self.set_min_score(self.min_score)

    def set_min_score(self, value: float) -> None:
        """Hide detections scoring below ``value``."""
        self.min_score = float(value)
        if self.points is not None and len(self._det["score"]):
            self.points.shown = self._det["score"] >= self.min_score

    @property
    def n_detections(self) -> int:
        return len(self._det["y"])
