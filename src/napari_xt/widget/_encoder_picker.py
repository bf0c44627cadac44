"""The dock's region-encoder choice: the catalogue grouped, each entry's licence, gate and weight state, and a
measured estimate of how long the chosen encoder takes on the current image and device.

Users pick foundation models by name, and the names hide what matters before a run: whose licence the weights carry,
whether the hub gates them behind a token, whether they are on this machine at all, and whether the model will take
minutes or hours here. The combo lists the catalogue grouped (pathology / remote sensing / general / small) with each
entry's weight state (``app.catalog.list_encoders``, the same answer as ``napari-xt models``); the details line says
the rest, and labels random weights as such. The speed line comes from ``app.speed.estimate`` (the median of several
timed batches on the chosen device, extrapolated to the image's regions), run in a worker, debounced, never while a
run is going: the widget only shows the result, it never imports torch.

In the Run tab the choice follows the chosen model's encoder; picking another entry shows that encoder's facts and
time, and says that using it means training a model with it (the Run itself always uses the model's encoder). For
the model's own encoder, the weights shown are the model's (trained, in its file), not the catalogue's.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from magicgui.widgets import ComboBox, Container, Label
from napari.qt.threading import create_worker
from superqt.utils import qdebounced

from ..app import speed
from ..app.catalog import EncoderInfo, ModelInfo

#: Milliseconds of quiet before the estimate starts (typing a region size must not start one per keystroke).
DEBOUNCE_MS = 600


def carried(model: ModelInfo | None, name: str) -> bool:
    """``name`` is the encoder of a trained ``model``: its weights are in the model's file, whatever the catalogue
    says about that encoder's pretrained weights (issue 23: the demo model's trained tiny encoder was shown as
    "random init only")."""
    return model is not None and not model.random_init and bool(name) and name == model.region_encoder


def details_html(encoder: EncoderInfo | None, model: ModelInfo | None, name: str = "") -> str:
    """Group, input, licence, gate and weight state of ``encoder`` in a few lines; random weights said plainly.

    The catalogue's licence, gate and weight state describe a *fresh* encoder (what training a new model with it would
    start from); for the chosen model's own encoder, what the model carries is said instead."""
    if encoder is None:
        return f"<b>{html.escape(name)}</b> · not in the catalogue (a timm/hub spec of the model)" if name else ""
    lines = [f"<b>{html.escape(encoder.name)}</b> · {html.escape(encoder.group)}"]
    shape = []
    if encoder.patch_size:
        shape.append(f"ViT patch {encoder.patch_size}")
    if encoder.native_size:
        shape.append(f"native {encoder.native_size} px")
    if shape:
        lines[0] += " · " + ", ".join(shape)
    if carried(model, encoder.name):
        assert model is not None
        lines.append("weights: <b>trained, in the model's file</b> (nothing to download)")
        if model.licence:
            lines.append(f"licence of the model: {html.escape(model.licence)}")
        if "random-init" in (model.description or ""):
            lines.append("<i>trained from a random-init encoder (not pretrained) on your annotations</i>")
        return "<br>".join(lines)
    licence = encoder.licence or ("none (random weights)" if encoder.random_init else "unknown")
    gate = {True: "gated: accept the terms on the hub, then set HF_TOKEN",
            None: "may be gated: if the hub refuses, accept its terms and set HF_TOKEN"}.get(encoder.gated, "not gated")
    lines.append(f"licence {html.escape(licence)} · {gate}")
    lines.append(f"weights: {html.escape(encoder.state_text())}")
    random = _random_note(encoder, model)
    if random:
        lines.append(f"<b>{random}</b>")
    if model is not None and model.region_encoder and encoder.name != model.region_encoder:
        own, other = html.escape(model.region_encoder), html.escape(encoder.name)
        lines.append(f"<i>the model uses {own}; to use {other}, train a model with it (Fine-tune, or napari-xt train "
                     f"--region-encoder {other})</i>")
    return "<br>".join(lines)


def _random_note(encoder: EncoderInfo, model: ModelInfo | None) -> str:
    if model is not None and model.random_init and encoder.name == model.region_encoder:
        return "random weights (preset): shows the mechanics, not meaningful results"
    if encoder.random_init:
        return "random init only: no pretrained weights exist for it"
    return ""


class EncoderPicker:
    """The encoder combo, its details and its time estimate (three widgets a panel lays out, see :meth:`place`).

    ``request_source()`` returns ``(PredictRequest, layer)`` for the estimate, or a sentence when there is none yet
    (no image); ``can_estimate()`` is False while a run is going (timing then would slow the run and be wrong).
    """

    def __init__(self, request_source: Callable[[], Any], can_estimate: Callable[[], bool] = lambda: True):
        self._source, self._can_estimate = request_source, can_estimate
        self._encoders: dict[str, EncoderInfo] = {}
        self._model: ModelInfo | None = None
        self.combo = ComboBox(label="Region encoder", choices=self._choices, tooltip="The catalogue by group, with "
                              "weight state; the Run uses the model's encoder (pick another to see its facts and time)")
        self.details = Label(value="")
        self.speed = Label(value="")
        for label in (self.details, self.speed):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(200)
        self.widgets = [self.combo, self.details, self.speed]
        self.estimate: speed.SpeedEstimate | None = None
        self._worker: Any = None
        self._again = self._closed = False
        self.combo.changed.connect(self._on_choice)
        self.schedule = qdebounced(self._start, timeout=DEBOUNCE_MS)
        self.combo.native.destroyed.connect(self._close)  # the dock closed: no estimate may touch its widgets

    def _close(self, *_args: Any) -> None:
        self._closed = True
        self.schedule.cancel()

    def place(self, panel: Container, after: Any, replacing: Any = None) -> None:
        """Put the three widgets in ``panel`` right after ``after``; hide ``replacing`` (the panel's plain combo)."""
        if replacing is not None:
            replacing.visible = False
        index = list(panel).index(after) + 1
        for offset, widget in enumerate(self.widgets):
            panel.insert(index + offset, widget)

    # -- the list ----------------------------------------------------------------------------------------------------
    def _choices(self, _w: Any = None) -> list[tuple[str, str]]:
        """The catalogue; the chosen trained model's own encoder says "[in the model]" rather than the catalogue's
        weight state, which is about building a fresh one."""
        listed = [(f"{info.group} · {name}  [in the model]" if carried(self._model, name) else info.label, name)
                  for name, info in self._encoders.items()]
        own = self._model.region_encoder if self._model is not None else ""
        if own and own not in self._encoders:
            listed.insert(0, (f"model's own · {own}", own))
        return listed

    def set_encoders(self, encoders: list[EncoderInfo]) -> None:
        """The catalogue (``Catalog.encoders``, already grouped) with weight states."""
        self._encoders = {info.name: info for info in encoders}
        with self.combo.changed.blocked():
            self.combo.reset_choices()
        self._on_choice(self.combo.value)

    def follow_model(self, model: ModelInfo | None) -> None:
        """The chosen model changed: select its encoder, describe it, estimate it."""
        self._model = model
        with self.combo.changed.blocked():
            self.combo.reset_choices()
            if model is not None and model.region_encoder in self.combo.choices:
                self.combo.value = model.region_encoder
        self._on_choice(self.combo.value)

    def _on_choice(self, name: Any) -> None:
        name = str(name or "")
        self.details.value = details_html(self._encoders.get(name), self._model, name)
        self.estimate = None
        self.schedule()

    # -- the estimate --------------------------------------------------------------------------------------------------
    def _start(self, *_args: Any) -> None:
        if self._closed:
            return
        if self._worker is not None:
            self._again = True  # inputs changed while timing: time again when this one ends
            return
        name = self.combo.value
        if not name or not self._can_estimate():
            return
        built = self._source()
        if isinstance(built, str):  # no image or no model yet: nothing to estimate
            self.speed.value = ""
            return
        request, layer = built
        self.speed.value = f"<i>timing {html.escape(str(name))} on {html.escape(request.run.device)}…</i>"
        worker = create_worker(speed.estimate, request, layer, str(name), _ignore_errors=True)
        worker.returned.connect(self._on_estimate)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        worker.start()

    def _on_estimate(self, result: speed.SpeedEstimate) -> None:
        if self._closed:
            return
        self.estimate = result
        text = html.escape(result.note())
        self.speed.value = (f"<b style='color:#e8a33d'>{text}</b>: a GPU, a coarser resolution or a smaller encoder "
                            "would be faster" if result.slow else text)

    def _on_error(self, err: BaseException) -> None:
        if self._closed:
            return
        self.speed.value = f"<i>no time estimate: {html.escape(' '.join(str(err).split()) or type(err).__name__)}</i>"

    def _on_finished(self) -> None:
        self._worker = None
        if self._again and not self._closed:
            self._again = False
            self.schedule()
