"""Put a Labels layer into the viewer over several event-loop turns instead of one long stall (issue 25).

``viewer.add_labels`` does everything in one call on the main thread: the layer model, the vispy layer, the layer
list's row, the layer controls, two editing overlays (the polygon tool's and the brush stroke's vispy visuals) and
then, on the next turn, the repaint of all of it. Measured under Xvfb on 2 cores (``benchmarks/bench_widget.py``):
120-170 ms in one piece, right at the click on Run. Split, no piece is much longer than a repaint:

1. at the click, the layer model only (~10 ms), its two editing overlays taken out;
2. a turn later (a timer, so the viewer's own timers and repaints run first), the insertion into the layer list
   without its vispy visual and its layer controls, and without making the new layer the active one (activating
   it would build and show its controls, and the dock gives the active layer back to the image anyway);
   a turn later, its vispy visual (~13 ms): each step is followed by a repaint (~35-45 ms under Xvfb), so every
   step taken out of one turn is a shorter stall;
3. its layer controls (~15-25 ms and a relayout of the dock area) only when the user makes it active or it is
   being removed (napari looks them up then). (A run's layer is often never chosen. The demo's close once found no
   controls for it: its dock's viewer is napari's ``PublicOnlyProxy``, whose layer list returns new proxies, so
   ``is`` missed the layer at its removal; hence ``unwrapped``, tested with a proxy in ``test_click_cost.py``.)
4. its two editing overlays only when the layer becomes the active one: napari's Labels key bindings use them
   (Escape resets the polygon) and act on the active layer only; a result layer is multiscale, hence never
   editable, so nothing draws with them. Their vispy visuals cost 15-45 ms: paid, if ever, at the user's own click.

Everything here leans on napari internals (``Labels._overlays``, ``LayerList._activate_on_insert``, the layer
controls' ``_add`` callback); each is looked up defensively, and a napari without one gets that step undivided.
``finish()`` does what is left of the insertion at once (the run is prepared already and needs the layer in the
viewer), ``cancel()`` takes the layer out again (the run never started).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any

from qtpy.QtCore import QTimer

#: Labels overlays whose vispy visuals are the slow part of an insertion; put back when the layer is made active.
DEFERRED_OVERLAYS = ("polygon", "brush_stroke")
#: wait between the steps: long enough for the viewer to repaint (and the timer-driven redraws to run) in between
STEP_MS = 40


def unwrapped(obj: Any) -> Any:
    """The object behind napari's ``PublicOnlyProxy``: a plugin's dock gets a proxied viewer, whose layer list hands
    out proxies (another object each time), so ``is`` against our own layer needs the object itself."""
    return getattr(obj, "__wrapped__", obj)


def _inserted_callbacks(layers: Any, owner_type: str, name: str) -> list:
    """``owner_type.name`` among ``layers.events.inserted``'s callbacks, as bound methods (none in another napari)."""
    found = []
    for callback in getattr(layers.events.inserted, "callbacks", ()):
        if isinstance(callback, tuple) and len(callback) == 2 and callback[1] == name:
            owner = callback[0]() if callable(callback[0]) else None
            if owner is not None and type(owner).__name__ == owner_type:
                found.append(getattr(owner, name))
    return found


class StagedLayer:
    """Inserts ``layer`` into ``viewer`` step by step (module docstring)."""

    def __init__(self, viewer: Any, layer: Any):
        # the viewer itself, not the proxy napari hands a plugin's dock: the steps below use private attributes,
        # which the proxy warns about (and a later napari refuses)
        self.viewer, self.layer = unwrapped(viewer), layer
        overlays = getattr(layer, "_overlays", None)
        self._held = {name: overlays.pop(name) for name in DEFERRED_OVERLAYS
                      if overlays is not None and name in overlays}
        self._controls_pending: list = []
        self._visual_pending: list = []
        self._hook: Any = None
        self._removing_hook: Any = None
        self.inserted = False
        QTimer.singleShot(STEP_MS, self._on_turn(self._insert))  # not 0: that would run before any other timer

    def _insert(self) -> None:
        if self.inserted:
            return
        self.inserted = True
        layers = self.viewer.layers
        activate = getattr(layers, "_activate_on_insert", None)
        adders = _inserted_callbacks(layers, "QtLayerControlsContainer", "_add")
        visuals = _inserted_callbacks(layers, "QtViewer", "_on_add_layer_change")
        if activate is not None:
            layers._activate_on_insert = False
        for callback in (*adders, *visuals):
            layers.events.inserted.block(callback)
        try:
            layers.append(self.layer)
        finally:
            for callback in (*adders, *visuals):
                layers.events.inserted.unblock(callback)
            if activate is not None:
                layers._activate_on_insert = activate
        self._controls_pending, self._visual_pending = adders, visuals
        if visuals:
            QTimer.singleShot(STEP_MS, self._on_turn(self._add_visual))
        # before the controls' own handlers, which would look for the controls not made yet; functions, not bound
        # methods, which napari would hold weakly (this object is dropped once the run has its layer)
        self._hook = lambda _event=None: self._on_active()
        self._removing_hook = lambda event=None: self._on_removing(event)
        layers.selection.events.active.connect(self._hook, position="first")
        # "removing": napari's own handlers of "removed" look the visual and controls up, and a plugin's callback
        # cannot go before napari's own on the same event
        layers.events.removing.connect(self._removing_hook)

    def _add_visual(self, leaving: bool = False) -> None:
        pending, self._visual_pending = self._visual_pending, []
        if pending and (leaving or self.layer in self.viewer.layers):
            for callback in pending:
                callback(SimpleNamespace(value=self.layer))

    def _add_controls(self, leaving: bool = False) -> None:
        pending, self._controls_pending = self._controls_pending, []
        if pending and (leaving or self.layer in self.viewer.layers):
            for adder in pending:
                adder(SimpleNamespace(value=self.layer))

    def _on_active(self) -> None:
        if unwrapped(self.viewer.layers.selection.active) is self.layer:
            self._add_visual()
            self._add_controls()
            self._restore_overlays()
            QTimer.singleShot(0, self._disconnect)  # whole now: nothing left to do for it (not while emitting)

    def _on_removing(self, event: Any) -> None:
        """Before napari's handlers of "removed", which look the layer's visual and controls up."""
        layers, index = self.viewer.layers, getattr(event, "index", None)
        if self.layer not in layers or (isinstance(index, int) and 0 <= index < len(layers)
                                        and unwrapped(layers[index]) is self.layer):
            self._add_visual(leaving=True)
            self._add_controls(leaving=True)
            QTimer.singleShot(0, self._disconnect)

    def _disconnect(self) -> None:
        """Let go of the viewer's events (they would keep this object and its layer alive)."""
        for emitter, hook in ((self.viewer.layers.selection.events.active, self._hook),
                              (self.viewer.layers.events.removing, self._removing_hook)):
            if hook is not None:
                with contextlib.suppress(TypeError, ValueError, RuntimeError):
                    emitter.disconnect(hook)

    def _restore_overlays(self) -> None:
        held, self._held = self._held, {}
        for name, overlay in held.items():
            self.layer._overlays[name] = overlay

    def _on_turn(self, step):
        """``step`` for a timer: a viewer closed meanwhile (its Qt objects deleted) ends the staging quietly."""
        def run() -> None:
            try:
                step()
            except RuntimeError:  # "wrapped C/C++ object ... has been deleted"
                self._controls_pending = []
        return run

    def finish(self) -> None:
        """The layer in the viewer, drawn, now (its controls still wait for it to be chosen or removed)."""
        self._insert()
        self._add_visual()

    def cancel(self) -> None:
        """Take the layer out (or never put it in); its overlays go back so the object stays a whole Labels layer."""
        if not self.inserted:
            self.inserted = True  # the pending insertion does nothing
        else:
            if self.layer in self.viewer.layers:
                self.viewer.layers.remove(self.layer)
            self._disconnect()
        with contextlib.suppress(Exception):
            self._restore_overlays()
