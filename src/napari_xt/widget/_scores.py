"""Classification output: a window-score heat map over the image and the image's top classes.

A classification head scores each context window. The heat map is a napari Image layer of one float per raster cell,
built from the worker's :class:`~napari_xt.app.events.ScoreLayout` (a raster of window ids): repainting it is one
lookup ``scores[window_map]``, whatever the number of windows, so it can follow the throttled refresh of the other
overlays. The top classes are the mean of the windows scored so far while the run goes, and the store's image scores
once it is complete (the engine computes them the same way, over every window in the store).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ._colors import class_colors

TOP_K = 5
HEAT_COLORMAP = "inferno"


class ScoreMap:
    """The heat-map layer and the top classes of one classification run in ``viewer``."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.layer = None
        self.layout = None
        self.scores: dict[int, np.ndarray] = {}  # window id -> class scores
        self.image_scores: np.ndarray | None = None  # the store's, once the run is complete
        self.chosen: int | None = None  # class shown by the heat map; None follows the top class
        self._heat: np.ndarray | None = None
        self._dirty = False

    # -- state -----------------------------------------------------------------------------------------------------
    def attach(self, layout, image_layer, store_path) -> None:
        """Show the windows of a new run (or a resumed one: the store's window scores are painted at once)."""
        self.layout = layout
        self.scores = {int(w): np.asarray(s, dtype=np.float32) for w, s in layout.stored.items()}
        self.image_scores = None
        if self.chosen is not None and self.chosen >= len(layout.class_names):
            self.chosen = None
        self._heat = np.full(layout.window_map.shape, np.nan, dtype=np.float32)
        scale = np.asarray(image_layer.scale, dtype=float)[-2:]
        translate = np.asarray(image_layer.translate, dtype=float)[-2:]
        cell = layout.cell_level0
        marker = {"store": str(store_path), "heat_map": True}
        kwargs = {
            "scale": tuple(scale * cell),
            # a cell covers `cell` image pixels from the image's top-left corner: put its centre on theirs
            "translate": tuple(translate + (cell - 1) / 2 * scale),
            "metadata": {"napari_xt": marker},
        }
        name = f"xT window scores [{Path(store_path).name}]"
        layer = next((lay for lay in self.viewer.layers
                      if lay.metadata.get("napari_xt", {}) == marker), None)
        if layer is not None:  # Resume: reuse the layer of this store
            self.layer = layer
            layer.data = self._heat
            for key, value in kwargs.items():
                setattr(layer, key, value)
            layer.name = name
        else:
            self.layer = self.viewer.add_image(
                self._heat, name=name, colormap=HEAT_COLORMAP, opacity=0.5, blending="translucent",
                contrast_limits=(0.0, 1.0), units=tuple(image_layer.units)[-2:], **kwargs,
            )
        self._dirty = True
        self.flush()

    def add(self, payload) -> None:
        """Note a finished window (main thread); the layer catches up on the next flush."""
        self.scores[int(payload.window_id)] = np.asarray(payload.scores, dtype=np.float32)
        self._dirty = True

    def set_final(self, image_scores) -> None:
        """The store's image scores at the end of a complete run."""
        if image_scores is not None and self.layout is not None:
            self.image_scores = np.asarray(image_scores, dtype=np.float32)
            self._dirty = True

    def choose(self, index: int | None) -> None:
        """Show class ``index`` in the heat map (None: the current top class)."""
        self.chosen = None if index is None else int(index)
        self._dirty = True
        self.flush()

    @property
    def n_classes(self) -> int:
        return len(self.layout.class_names) if self.layout is not None else 0

    def mean_scores(self) -> np.ndarray | None:
        """The image's class scores: the store's once complete, else the mean of the windows so far."""
        if self.image_scores is not None:
            return self.image_scores
        if not self.scores:
            return None
        return np.mean(np.stack(list(self.scores.values())), axis=0)

    @property
    def shown_class(self) -> int | None:
        if self.chosen is not None:
            return self.chosen
        mean = self.mean_scores()
        return None if mean is None else int(np.argmax(mean))

    # -- drawing ---------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Repaint the heat map for the shown class (a lookup per cell) and set its contrast to the scores' range."""
        if not self._dirty or self.layer is None or self.layout is None:
            return
        self._dirty = False
        cls = self.shown_class
        n_windows = max([*self.layout.boxes, *self.scores, -1]) + 1
        lut = np.full(n_windows + 1, np.nan, dtype=np.float32)  # the last entry is "no window" (-1)
        if cls is not None:
            for w, s in self.scores.items():
                if 0 <= w < n_windows and cls < len(s):
                    lut[w] = s[cls]
        np.take(lut, self.layout.window_map, out=self._heat, mode="wrap")
        self.layer.refresh()
        values = lut[np.isfinite(lut)]
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            if hi - lo < 1e-3:
                lo, hi = lo - 5e-4, hi + 5e-4
            self.layer.contrast_limits_range = (min(0.0, lo), max(1.0, hi))
            self.layer.contrast_limits = (lo, hi)

    def top_html(self, k: int = TOP_K) -> str:
        """The top ``k`` classes with their colours and scores, and where the numbers come from."""
        mean = self.mean_scores()
        if self.layout is None or mean is None:
            return "<i>class scores appear as context windows finish</i>"
        names = self.layout.class_names
        colors = self.layout.class_colors
        # a classification class 0 is no background: without the checkpoint's colours, skip the palette's black
        rgba = class_colors(names, colors) if colors else class_colors(["", *names], [])[1:]
        lines = []
        for i in np.argsort(-mean)[:k]:
            colour = "#" + "".join(f"{round(v * 255):02x}" for v in rgba[i][:3])
            name = names[i] if i < len(names) else f"class {i}"
            lines.append(f"<span style='background:{colour}'>&nbsp;&nbsp;</span> {html.escape(name)} "
                         f"<b>{mean[i]:.3f}</b>")
        if self.image_scores is not None:
            source = "image scores (store)"
        else:
            source = f"mean of {len(self.scores)} / {len(self.layout.boxes)} windows so far"
        return f"<b>top classes</b> · {source}<br>" + "<br>".join(lines)
