"""The dock's "Fine-tune" tab: teach a model on the annotations painted in napari, without freezing the viewer.

Train runs ``app.finetune.training_events`` in a napari thread worker (progress also in the Activity dock) and
relays each event: the status line and a small loss / validation curve update live. Stop asks the trainer to stop
after the current window; the best checkpoint so far stays on disk. When training ends, the new model is added to
the Run tab's model list and selected there.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils import notifications
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..app.finetune import FinetuneRequest, training_events
from ..app.layers import user_cache_dir

FRESH = "__fresh__"


class CurveView(QWidget):
    """Training loss (per window, grey) and validation score (per epoch, orange, 0..1) as two polylines."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss: list[float] = []
        self.val: list[float] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("grey: training loss per window; orange: validation score per epoch (0-1)")

    def clear(self) -> None:
        self.loss, self.val = [], []
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        painter.fillRect(0, 0, w, h, QColor(38, 41, 48))
        for values, color, top in ((self.loss, QColor(170, 170, 170), max(self.loss or [1.0])),
                                   (self.val, QColor(255, 160, 40), 1.0)):
            if len(values) < 2 or top <= 0:
                continue
            n = len(values) - 1
            pts = [QPointF(4 + (w - 8) * i / n, h - 4 - (h - 8) * min(v / top, 1.0)) for i, v in enumerate(values)]
            painter.setPen(QPen(color, 1.5))
            painter.drawPolyline(QPolygonF(pts))
        painter.end()


class FinetuneTab(Container):
    """Image + annotation layers, base model, epochs, output file; Train / Stop; status and curves."""

    def __init__(self, viewer, model_choices, on_trained, models_folder: str | None = None):
        super().__init__(labels=True)
        self.viewer, self._model_choices, self._on_trained = viewer, model_choices, on_trained
        self.models_folder = models_folder
        self.image = ComboBox(label="Image", choices=self._layers("Image"))
        self.labels_layer = ComboBox(label="Labels", choices=self._optional("Labels"),
                                     tooltip="painted classes (segmentation); 0 = not annotated")
        self.points = ComboBox(label="Points", choices=self._optional("Points"),
                               tooltip="marked objects (detection); a 'class' feature gives their classes")
        self.area = ComboBox(label="Complete in", choices=self._optional("Shapes"),
                             tooltip="where every object was marked (points outside it are not negatives)")
        self.base = ComboBox(label="Start from", choices=self._bases)
        self.epochs = SpinBox(label="Epochs", value=10, min=1, max=1000)
        self.mode = ComboBox(label="Mode", choices=[("Full (train end to end)", "full"),
                                                    ("Quick (frozen encoder, cached features)", "quick")],
                             value="full", tooltip="Quick encodes each region once and trains the context encoder "
                             "and heads over the cached features: fast, best with a pretrained encoder")
        self.freeze = CheckBox(text="Freeze region encoder", value=False)
        self.zero_unlabelled = CheckBox(text="Label 0 = not annotated", value=True)
        self.out = FileEdit(label="Save as", mode=FileDialogMode.OPTIONAL_FILE, filter="*.safetensors",
                            value=self._default_out())
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(value="Paint labels or add points on an image, then Train.")
        self.extend([self.image, self.labels_layer, self.points, self.area, self.base, self.mode, self.epochs,
                     self.freeze, self.zero_unlabelled, self.out,
                     Container(widgets=[self.train_button, self.stop_button], layout="horizontal", labels=False),
                     self.status])
        self.curve = CurveView()
        self.native.layout().addWidget(self.curve)
        self.status.native.setWordWrap(True)
        self.status.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.train_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.image.changed.connect(lambda _v: setattr(self.out, "value", self._default_out()))
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._relist)
        self.worker = None
        self._holder: dict = {}

    # -- lists -------------------------------------------------------------------------------------------------
    def _layers(self, kind: str):
        return lambda _w=None: [(layer.name, layer) for layer in self.viewer.layers if type(layer).__name__ == kind]

    def _optional(self, kind: str):
        return lambda _w=None: [("—", None)] + self._layers(kind)()

    def _bases(self, _w=None):
        return [("fresh tiny model", FRESH)] + [(label, key) for label, key in self._model_choices()
                                               if key != "__browse__" and label != "Browse…"]

    def _relist(self, _event=None) -> None:
        for combo in (self.image, self.labels_layer, self.points, self.area):
            combo.reset_choices()

    def refresh_models(self) -> None:
        self.base.reset_choices()

    def _default_out(self) -> Path:
        folder = Path(os.path.expanduser(self.models_folder)) if self.models_folder else user_cache_dir() / "models"
        layer = self.image.value if hasattr(self, "image") else None
        stem = (layer.name if layer is not None else "model").replace(" ", "_").replace("/", "_")
        path, n = folder / f"{stem}-finetuned.safetensors", 2
        while path.exists():
            path, n = folder / f"{stem}-finetuned-{n}.safetensors", n + 1
        return path

    # -- running -----------------------------------------------------------------------------------------------
    def request(self) -> FinetuneRequest | None:
        if self.image.value is None:
            notifications.show_error("Fine-tune: open an image first.")
            return None
        if self.labels_layer.value is None and self.points.value is None:
            notifications.show_error("Fine-tune: choose a Labels layer or a Points layer with your annotations.")
            return None
        out = Path(str(self.out.value))
        if out.suffix != ".safetensors":
            out = out.with_suffix(".safetensors")
        if out.exists():
            notifications.show_error(f"Fine-tune: {out.name} exists; choose another file name (nothing is "
                                     "overwritten).")
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        base = None if self.base.value == FRESH else self.base.value
        return FinetuneRequest(self.image.value, self.labels_layer.value, self.points.value, self.area.value,
                               base=base, out=str(out), epochs=int(self.epochs.value),
                               freeze_encoder=bool(self.freeze.value), mode=str(self.mode.value),
                               zero_is_unlabelled=bool(self.zero_unlabelled.value))

    def start(self, _=None) -> None:
        if self.worker is not None:
            return
        request = self.request()
        if request is None:
            return
        self._holder = {}
        self.curve.clear()
        self.status.value = "preparing (reading annotations, building the model)…"
        worker = create_worker(training_events, request, self._holder, _progress={"desc": "xT fine-tune"},
                               _ignore_errors=True)
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker, self._out = worker, request.out
        self._set_running(True)
        worker.start()

    def stop(self, _=None) -> None:
        trainer = self._holder.get("trainer")
        if trainer is not None:
            trainer.stop()
            self.status.value = "stopping after this window (the best checkpoint so far is kept)…"
        elif self.worker is not None:
            self.worker.quit()

    def _on_event(self, e: dict) -> None:
        kind = e["kind"]
        if kind == "start":
            init = e.get("initial", {}).get("score")
            if isinstance(init, float):
                self.curve.val.append(max(init, 0.0))
            self.status.value = (f"training on {e['train_windows']} windows, validating on {e['val_windows']}")
        elif kind == "step":
            self.curve.loss.append(float(e["loss"]))
            eta = f" · ETA {e['eta_s']:.0f} s" if e.get("eta_s") else ""
            self.status.value = f"epoch {e['epoch']} · step {e['step']}/{e['steps']} · loss {e['loss']:.3f}{eta}"
        elif kind == "epoch":
            score = (e.get("val") or {}).get("score")
            if isinstance(score, float) and not math.isnan(score):
                self.curve.val.append(score)
            self.status.value = (f"epoch {e['epoch']}/{e['epochs']} · loss {e['loss']:.3f} · val {_metrics(e['val'])}"
                                 + _per_class(e.get("val") or {}))
        elif kind == "done":
            final = _metrics(e.get("final") or {})
            self.status.value = (f"saved {Path(e['out']).name} (best epoch {e['best_epoch']}, {final}); selected "
                                 "in the Run tab")
            self._on_trained(e["out"])
            self._continue_from(e["out"])
        self.curve.update()

    def _continue_from(self, path: str) -> None:
        """The interactive loop: the next Train starts from the model just saved (correct the labels, Train again)."""
        self.base.reset_choices()
        if any(value == path for _label, value in self._bases()):
            self.base.value = path
        self.out.value = self._default_out()

    def _on_error(self, err: BaseException) -> None:
        text = str(err).strip() or type(err).__name__
        notifications.show_error(f"Fine-tune: {text}")
        self.status.value = f"not trained: {text}"

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.train_button.enabled = not running
        self.stop_button.enabled = running


def _per_class(val: dict) -> str:
    """' · sea 0.99 · ship 0.41' and a warning for each annotated class the model never predicted."""
    names, iou, annotated = val.get("class_names") or [], val.get("iou") or [], val.get("annotated_px") or []
    parts = [f"{n} {v:.2f}" for n, v, a in zip(names, iou, annotated, strict=False) if a and v is not None]
    text = "".join(f" · {p}" for p in parts)
    for name in val.get("never_predicted") or []:
        text += f"\n⚠ {name}: 0 px predicted"
    return text


def _metrics(val: dict) -> str:
    parts = [f"{name} {val[key]:.3f}" for key, name in (("miou", "mIoU"), ("f1", "F1"), ("accuracy", "accuracy"))
             if isinstance(val.get(key), float) and not math.isnan(val[key])]
    return ", ".join(parts) or "no validation windows"
