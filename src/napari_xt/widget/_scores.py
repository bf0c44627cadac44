"""Classification output: a window-score heat map over the image and the image's top classes.

A classification head scores each context window. The heat map is a napari Image layer of one float per raster cell,
built from the worker's :class:`~napari_xt.app.events.ScoreLayout` (a raster of window ids): repainting it is one
lookup ``scores[window_map]``, whatever the number of windows, so it can follow the throttled refresh of the other
overlays. The top classes are the mean of the windows scored so far while the run goes, and the store's image scores
once it is complete (the engine computes them the same way, over every window in the store). Painting and placement
are :mod:`napari_xt.app.heatmap`'s, shared with the store reader, so a store reopened in napari shows the same map and
Resume reuses that layer.
"""

from __future__ import annotations

import html

import numpy as np

from ..app.heatmap import HEAT_COLORMAP, contrast, heat_layer_kwargs, heat_marker, mean_scores, paint
from ..palette import rgba as palette_rgba

TOP_K = 5
__all__ = ["HEAT_COLORMAP", "TOP_K", "ScoreMap"]


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
        kwargs = heat_layer_kwargs(layout, image_layer.scale, image_layer.translate, store_path)
        marker = heat_marker(store_path)
        layer = next((lay for lay in self.viewer.layers
                      if lay.metadata.get("napari_xt", {}) == marker), None)
        if layer is not None:  # Resume, or a store opened in napari: reuse the layer of this store
            self.layer = layer
            layer.data = self._heat
            for key in ("scale", "translate", "metadata", "name"):
                setattr(layer, key, kwargs[key])
        else:
            self.layer = self.viewer.add_image(self._heat, contrast_limits=(0.0, 1.0),
                                               units=tuple(image_layer.units)[-2:], **kwargs)
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
        return mean_scores(self.scores, self.image_scores)

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
        _, lut = paint(self.layout, self.scores, self.shown_class, out=self._heat)
        self.layer.refresh()
        limits = contrast(lut)
        if limits is not None:
            self.layer.contrast_limits_range = limits[1]
            self.layer.contrast_limits = limits[0]

    def top_html(self, k: int = TOP_K) -> str:
        """The top ``k`` classes with their colours and scores, and where the numbers come from."""
        mean = self.mean_scores()
        if self.layout is None or mean is None:
            return "<i>class scores appear as context windows finish</i>"
        names = self.layout.class_names
        colors = self.layout.class_colors
        # a classification class 0 is no background: without the checkpoint's colours, skip the palette's black
        rgba = palette_rgba(names, colors) if colors else palette_rgba(["", *names], [])[1:]
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
