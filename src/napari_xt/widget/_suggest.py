"""The Fine-tune tab's suggestions: after each Train, where annotating next would teach the model most.

When training ends (and after the view's preview, so the two runs never share the cores), the saved model is run
over the image — or only the view: by default the whole image when its plan has at most :data:`WHOLE_IMAGE_REGIONS`
regions, else the view, so a whole slide never costs a full pass after every Train — by
``app.suggest_run.layer_suggestion_events`` in a worker; its doubt per region
shows as the "xT uncertainty" heat map and its top K regions, spread apart, as the "xT suggestions" Shapes layer.
*Next suggestion* / *Previous* centre the view on one. A visited suggestion that the user then annotates (paint in
the Labels layer, or points for detection) is left out of the next round's suggestions; for detection it also joins
the "complete" area, where every object is marked (the tab's *Complete in* layer, made when there is none), so its
unmarked pixels teach "no object here" without a rectangle drawn by hand.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils import notifications

from ..app.events import RegionDone
from ..app.suggest import Suggestions, SuggestOptions
from ..app.suggest_run import layer_suggestion_events
from ._fields import camera
from ._finetune_preview import canvas_size, visible_box

SUGGESTIONS_NAME = "xT suggestions"
HEAT_NAME = "xT uncertainty"
AREA_NAME = "xT complete area"
#: "Suggest in: automatic" runs the whole image up to this many regions (a 2-core CPU scores ~20 regions/s of 256 px
#: with EfficientNet-Lite0: under two minutes), else only the view
WHOLE_IMAGE_REGIONS = 2000
Box = tuple[float, float, float, float]  # level-0 (y0, x0, y1, x1)


class SuggestPanel(Container):
    """Suggestions of the Fine-tune tab ``tab`` (its viewer, layers, training window size and preview worker)."""

    def __init__(self, tab: Any):
        super().__init__(labels=False)  # a second label column beside the tab's would widen the whole dock
        self.tab, self.viewer = tab, tab.viewer
        #: on by default (the loop is Train → where next → annotate → Train), bounded by "Suggest in: automatic": the
        #: whole image only when it has at most WHOLE_IMAGE_REGIONS regions, else the view
        self.auto = CheckBox(text="Then suggest what to label next", value=True,
                             tooltip="after each Train, rank the regions by the model's doubt and outline the "
                             "best ones, spread apart ('xT suggestions'; heat map 'xT uncertainty')")
        self.top = SpinBox(label="Suggestions", value=8, min=1, max=500)
        self.where = ComboBox(label="Suggest in",
                              choices=[("automatic", "auto"), ("in the whole image", "image"), ("in the view", "view")],
                              value="auto", tooltip=f"automatic: the whole image when it has at most "
                              f"{WHOLE_IMAGE_REGIONS} regions (tissue only), else the regions in view")
        self.now_button = PushButton(text="Suggest now", tooltip="rank the regions with the model the last Train "
                                     "saved")
        self.prev_button = PushButton(text="◀ Previous", tooltip="centre the view on the previous suggestion")
        self.next_button = PushButton(text="Next ▶", tooltip="centre the view on the next suggestion")
        self.status = Label(value="")
        # one row, no label column of its own: a second label column beside the tab's widened the whole dock
        caption: Any = Label(value="Suggestions")
        how_many = Container(widgets=[caption, self.top], layout="horizontal", labels=False)
        browse = Container(widgets=[self.prev_button, self.next_button], layout="horizontal", labels=False)
        for row in (self, how_many, browse):
            row.margins = (0, 0, 0, 0)
        self.extend([self.auto, how_many, self.where, self.now_button, browse, self.status])
        self.prev_button.changed.connect(lambda _=None: self.go(-1))
        self.next_button.changed.connect(lambda _=None: self.go(1))
        self.now_button.changed.connect(self._now)
        self.found: Suggestions | None = None
        self.current = -1
        self.visited: set[int] = set()
        self.annotated: list[Box] = []  # level-0 boxes: never suggested again
        self.completed: set[int] = set()  # suggestions added to the complete area
        self.heat_layer: Any = None
        self.shapes_layer: Any = None
        self.worker: Any = None
        self._holder: dict = {}
        self._model: str | None = None
        self._image_layer: Any = None
        self._points: Any = None
        self._closed = False
        self.native.destroyed.connect(self._on_destroyed)

    # -- running -------------------------------------------------------------------------------------------------
    def after_train(self, model: str, image_layer: Any) -> None:
        """The tab's hook once a model is saved: suggest with it, after the view's preview when one runs."""
        self._model, self._image_layer = model, image_layer
        if not self.auto.value:
            return
        preview = self.tab.preview_worker
        if preview is not None:
            preview.finished.connect(self.start)
        else:
            self.start()

    def _now(self, _=None) -> None:
        if self._model is None:
            self.status.value = "Train first: the suggestions come from the model it saves."
            return
        self.start()

    def start(self, *_args: Any) -> None:
        if self._closed or self.worker is not None or self._model is None or self._image_layer is None:
            return
        self._note_annotated()
        where = self.where.value
        view = visible_box(self.viewer, self._image_layer) if where in ("view", "auto") else None
        options = SuggestOptions(top=int(self.top.value), exclude=tuple(self.annotated),
                                 trained_regions=self.trained_regions())
        self._holder = {}
        worker = create_worker(layer_suggestion_events, self._image_layer, self._model, options, view=view,
                               window_size=self._window_size() or None, holder=self._holder,
                               max_regions=WHOLE_IMAGE_REGIONS if where == "auto" else None, _ignore_errors=True,
                               _progress={"desc": "xT: where to annotate next"})
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.status.value = "scoring the regions by the model's doubt…"
        worker.start()

    def _window_size(self) -> int:
        return int(getattr(self.tab, "_window_size", 0) or 0)

    def trained_regions(self) -> int | None:
        """About how many regions the last Train taught the model (its training and validation windows, each
        window_size² regions): how far a detector's doubt is trusted (``SuggestOptions.trained_regions``)."""
        done = getattr(self.tab, "last", {}).get("done")
        if done is None:
            return None

        def read(key: str) -> int:
            value = done.get(key) if isinstance(done, dict) else getattr(done, key, None)
            return int(value or 0)

        windows = read("train_windows") + read("val_windows")
        return windows * max(self._window_size(), 1) ** 2 if windows else None

    def cancel(self) -> None:
        run = self._holder.get("run")
        if run is not None:
            run.cancel()

    def _on_event(self, e: Any) -> None:
        if self._closed:
            return
        if isinstance(e, Suggestions):
            self.display(e, self._image_layer)
        elif isinstance(e, RegionDone) and e.n_done % 8 == 0:
            self.status.value = f"scoring the regions by the model's doubt: {e.n_done}/{e.n_total}"

    def _on_error(self, err: BaseException) -> None:
        if self._closed:
            return
        text = str(err).strip() or type(err).__name__
        notifications.show_error(f"Fine-tune: no suggestions: {text}")
        self.status.value = f"no suggestions: {text}"

    def _on_finished(self) -> None:
        self.worker = None

    def _on_destroyed(self, *_args: Any) -> None:
        self._closed = True
        self.cancel()

    # -- showing ---------------------------------------------------------------------------------------------------
    def display(self, found: Suggestions, image_layer: Any) -> None:
        """The heat map and the top K rectangles over ``image_layer`` (both reused from one Train to the next)."""
        self.found, self.current, self.visited, self.completed = found, -1, set(), set()
        scale = np.asarray(image_layer.scale, dtype=float)[-2:]
        translate = np.asarray(image_layer.translate, dtype=float)[-2:]
        step = float(found.heat_step)
        heat = np.nan_to_num(found.heat, nan=0.0)
        top = float(heat.max()) if heat.size and heat.max() > 0 else 1.0
        heat_kwargs = {"scale": tuple(scale * step), "translate": tuple(translate + scale * (step / 2 - 0.5)),
                       "contrast_limits": (0.0, top)}
        meta = {"napari_xt": {"suggestions": found.measure}}  # the tab never offers these as annotations
        active = self.viewer.layers.selection.active
        if self.heat_layer is not None and self.heat_layer in self.viewer.layers:
            self.heat_layer.data = heat
            for key, value in heat_kwargs.items():
                setattr(self.heat_layer, key, value)
        else:
            self.heat_layer = self.viewer.add_image(heat, name=HEAT_NAME, colormap="inferno", opacity=0.4,
                                                    blending="additive", metadata=meta, **heat_kwargs)
        rects = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]) for y0, x0, y1, x1 in found.boxes]
        ranks = np.arange(1, len(rects) + 1)
        if self.shapes_layer is not None and self.shapes_layer in self.viewer.layers:
            self.shapes_layer.data = []
            if rects:
                self.shapes_layer.add_rectangles(rects)
            self.shapes_layer.features = {"rank": ranks}
            self.shapes_layer.scale, self.shapes_layer.translate = tuple(scale), tuple(translate)
        else:
            self.shapes_layer = self.viewer.add_shapes(
                rects, shape_type="rectangle", name=SUGGESTIONS_NAME, edge_color="orange", face_color="transparent",
                edge_width=max(2.0, 0.01 * float(np.max(found.image_shape))), features={"rank": ranks},
                text={"string": "{rank}", "color": "orange", "anchor": "upper_left"}, scale=tuple(scale),
                translate=tuple(translate), metadata=meta)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # keep the user's tool on the layer they annotate
        what = f"{found.measure}" + (f", threshold {found.threshold:.2f}" if found.threshold is not None else "")
        cover = sum(found.reason(n) == "coverage" for n in range(len(found)))
        mix = f"; {cover} picked to cover the image, the model knows little yet" if cover else ""
        scope = " in the view" if found.info.get("scope") == "view" else ""
        self.status.value = (f"{len(found)} regions to annotate next, of {found.regions} scored{scope} ({what}{mix}): "
                             "Next suggestion ▶ centres the view on each")

    def go(self, step: int) -> None:
        """Centre the view on the next (``step`` 1) or previous (-1) suggestion, zoomed to show it whole."""
        if self.found is None or not len(self.found) or self._image_layer is None:
            return
        self._note_annotated()
        self.current = (self.current + step) % len(self.found)
        self.visited.add(self.current)
        y0, x0, y1, x1 = self.found.boxes[self.current]
        scale = np.abs(np.asarray(self._image_layer.scale, dtype=float)[-2:])
        translate = np.asarray(self._image_layer.translate, dtype=float)[-2:]
        centre = (np.array([(y0 + y1) / 2, (x0 + x1) / 2]) - 0.5) * scale + translate
        side = np.array([y1 - y0, x1 - x0]) * scale
        cam = camera(self.viewer)
        cam.center = tuple(centre)
        cam.zoom = float(np.min(np.asarray(canvas_size(self.viewer)) / (side * 1.6)))
        self._watch_points()
        score = float(self.found.scores[self.found.order[self.current]])
        why = ("picked to cover the image" if self.found.reason(self.current) == "coverage"
               else f"uncertainty {score:.3f}")
        self.status.value = (f"suggestion {self.current + 1}/{len(self.found)} ({why}): annotate it, then Next ▶ "
                             "or Train")

    # -- what the user annotated ---------------------------------------------------------------------------------
    def _box(self, i: int) -> Box:
        assert self.found is not None
        y0, x0, y1, x1 = (float(v) for v in self.found.boxes[i])
        return (y0, x0, y1, x1)

    def _watch_points(self) -> None:
        layer = self.tab.points.value
        if layer is self._points:
            return
        if self._points is not None:
            self._points.events.data.disconnect(self._on_points)
        self._points = layer
        if layer is not None:
            layer.events.data.connect(self._on_points)

    def _on_points(self, _event: Any = None) -> None:
        """Detection: a visited suggestion that now holds a marked point joins the complete area."""
        if self._closed or self.found is None:
            return
        for i in sorted(self.visited - self.completed):
            box = self._box(i)
            if self._points_inside(box):
                self._complete(box)
                self.completed.add(i)

    def _points_inside(self, box: Box) -> bool:
        layer = self._points
        if layer is None or not len(layer.data):
            return False
        y0, x0, y1, x1 = box
        p = self._level0(layer, np.asarray(layer.data, dtype=float)[:, -2:])
        return bool(np.any((p[:, 0] >= y0) & (p[:, 0] < y1) & (p[:, 1] >= x0) & (p[:, 1] < x1)))

    def _level0(self, layer: Any, data: np.ndarray) -> np.ndarray:
        world = data * np.asarray(layer.scale, dtype=float)[-2:] + np.asarray(layer.translate, dtype=float)[-2:]
        image = self._image_layer
        return (world - np.asarray(image.translate, dtype=float)[-2:]) / np.asarray(image.scale, dtype=float)[-2:]

    def _complete(self, box: Box) -> None:
        """Add ``box`` (level-0) to the tab's complete-area layer (made, and chosen in the tab, when there is none)."""
        area = self.tab.area.value
        image = self._image_layer
        if area is None:
            area = self.viewer.add_shapes(name=AREA_NAME, edge_color="lime", face_color="transparent",
                                          scale=tuple(image.scale[-2:]), translate=tuple(image.translate[-2:]))
            self.tab.area.reset_choices()
            self.tab.area.value = area
        y0, x0, y1, x1 = box
        corners = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
        world = corners * np.asarray(image.scale, dtype=float)[-2:] + np.asarray(image.translate, dtype=float)[-2:]
        data = (world - np.asarray(area.translate, dtype=float)[-2:]) / np.asarray(area.scale, dtype=float)[-2:]
        area.add_rectangles([data])
        if box not in self.annotated:
            self.annotated.append(box)

    def _note_annotated(self) -> None:
        """Visited suggestions that now hold paint or points: left out of the next round's suggestions."""
        if self.found is None:
            return
        for i in sorted(self.visited):
            box = self._box(i)
            if box not in self.annotated and (self._painted(box) or self._points_inside(box)):
                self.annotated.append(box)

    def _painted(self, box: Box) -> bool:
        layer = self.tab.labels_layer.value
        if layer is None:
            return False
        data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
        corners = np.array([[box[0], box[1]], [box[2], box[3]]], dtype=float)
        image = self._image_layer
        world = corners * np.asarray(image.scale, dtype=float)[-2:] + np.asarray(image.translate, dtype=float)[-2:]
        y = (world - np.asarray(layer.translate, dtype=float)[-2:]) / np.asarray(layer.scale, dtype=float)[-2:]
        y0, x0 = np.maximum(np.floor(y[0]).astype(int), 0)
        y1, x1 = np.ceil(y[1]).astype(int)
        return bool(np.any(np.asarray(data[y0:y1, x0:x1])))
