"""Put a Labels layer into the viewer over several event-loop turns instead of one long stall (issue 25).

``viewer.add_labels`` does everything in one call on the main thread: the layer model, the vispy layer, the layer
list's row, the layer controls, two editing overlays (the polygon tool's and the brush stroke's vispy visuals) and
then, on the next turn, the repaint of all of it. Measured under Xvfb on 2 cores (``benchmarks/bench_widget.py``):
120-170 ms in one piece, right at the click on Run. Split, no piece is much longer than a repaint:

1. the layer model (~10 ms), made with its two editing overlays taken out;
2. one turn later, the insertion, without making the new layer the active one (activating it would build and show
   its controls, and the dock gives the active layer back to the image anyway): ~35 ms;
3. one overlay put back per later turn (15-20 ms each), after the viewer has repainted.

The overlays go back because napari's Labels key bindings use them (Escape resets the polygon); a result layer is
multiscale and therefore never editable, so nothing draws with them meanwhile. ``finish()`` does what is left at
of the insertion at once (the run is prepared already and needs the layer in the viewer; the overlays still come
back on their turns), ``cancel()`` takes the layer out again (the run never started).
"""

from __future__ import annotations

import contextlib
from typing import Any

from qtpy.QtCore import QTimer

#: Labels overlays whose vispy visuals are the slow part of an insertion; put back one per turn.
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: wait between the steps: long enough for the viewer to repaint (and the timer-driven redraws to run) in between
STEP_MS = 40


class StagedLayer:
    """Inserts ``layer`` into ``viewer`` step by step (module docstring); ``done`` once it is whole and inserted."""

    def __init__(self, viewer: Any, layer: Any):
        self.viewer, self.layer = viewer, layer
        overlays = getattr(layer, "_overlays", None)
        # napari versions without these overlays (or without the private dict) insert the layer whole
        self._held = {name: overlays.pop(name) for name in DEFERRED_OVERLAYS
                      if overlays is not None and name in overlays}
        self.inserted = False
        QTimer.singleShot(0, self._on_turn(self._insert))

    @property
    def done(self) -> bool:
        return self.inserted and not self._held

    def _insert(self) -> None:
        if self.inserted:
            return
        self.inserted = True
        layers = self.viewer.layers
        activate = getattr(layers, "_activate_on_insert", None)
        if activate is not None:
            layers._activate_on_insert = False
        try:
            layers.append(self.layer)
        finally:
            if activate is not None:
                layers._activate_on_insert = activate
        if self._held:
            QTimer.singleShot(STEP_MS, self._on_turn(self._restore_one))

    def _on_turn(self, step):
        """``step`` for a timer: a viewer closed meanwhile (its Qt objects deleted) ends the staging quietly."""
        def run() -> None:
            try:
                step()
            except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
                self._held = {}
        return run

    def _restore_one(self) -> None:
        if not self._held:
            return
        name, overlay = next(iter(self._held.items()))
        del self._held[name]
        self.layer._overlays[name] = overlay
        if self._held:
            QTimer.singleShot(STEP_MS, self._on_turn(self._restore_one))

    def finish(self) -> None:
        """The layer in the viewer now (its overlays still come back on their turns)."""
        self._insert()

    def cancel(self) -> None:
        """Take the layer out (or never put it in); its overlays go back so the object stays a whole Labels layer."""
        if not self.inserted:
            self.inserted = True  # the pending insertion does nothing
        elif self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        held, self._held = self._held, {}
        for name, overlay in held.items():
            with contextlib.suppress(Exception):
                self.layer._overlays[name] = overlay
