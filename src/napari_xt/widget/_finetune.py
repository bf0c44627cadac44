"""The dock's "Fine-tune" tab: teach a model on the annotations painted in napari, without freezing the viewer.

Train runs ``app.finetune.training_events`` in a napari thread worker (progress also in the Activity dock) and
relays each event: the status line and a small loss / validation curve update live. Stop asks the trainer to stop
after the current window; the best checkpoint so far stays on disk. When training ends, the new model is added to
the Run tab's model list and selected there.

The interactive loop: when training ends (or is stopped) the saved (best) model runs at once on the regions in view
(``app.finetune.preview_events`` in a second worker) and shows as the "xT preview" Labels layer; *Start from*
switches to the model just saved, so after correcting the labels the next Train continues from it.

Segmentation targets come from a painted Labels layer, from a Shapes layer (polygons, rectangles, ellipses; class
from a ``class`` feature, else the class chosen here), or both (shapes drawn over the paint); the worker rasterises
the shapes lazily, region by region.
"""

from __future__ import annotations

import math
import os
import time
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
from qtpy.QtCore import Qt

from ..app.catalog import default_fresh_encoder
from ..app.events import RegionDone, RunFinished
from ..app.finetune import FinetuneRequest, PreviewReady, PreviewRequest, preview_events, training_events
from ..app.layers import user_cache_dir
from ..app.training import TrainHandle, TrainOptions
from ..train.events import CancelHandle, EpochDone, StepDone, TrainEvent, TrainFinished, TrainStarted
from ._curve import CurveView
from ._finetune_preview import PreviewOverlay, visible_box
from ._gis import load_gis_annotations
from ._suggest import SuggestPanel
from ._window import steady_line

#: Quick mode's budget when none is set: the interactive loop wants a model (and its overlay) within a minute
QUICK_BUDGET_S = 30

FRESH = "__fresh__"  # "Start from" keys of fresh models: FRESH + the region encoder's name ("__fresh__tiny")


class FinetuneTab(Container):
    """Image + annotation layers, base model, epochs, output file; Train / Stop; status and curves."""

    def __init__(self, viewer, model_choices, on_trained, models_folder: str | None = None):
        super().__init__(labels=True)
        self.viewer, self._model_choices, self._on_trained = viewer, model_choices, on_trained
        self.models_folder = models_folder
        self.image = ComboBox(label="Image", choices=self._layers("Image"))
        self.labels_layer = ComboBox(label="Labels", choices=self._optional("Labels"),
                                     tooltip="painted classes (segmentation); 0 = not annotated")
        self.shapes_layer = ComboBox(label="Polygons", choices=self._optional("Shapes"),
                                     tooltip="outlined classes (segmentation): polygons, rectangles, ellipses; each "
                                     "shape's class from its 'class' feature, else the class below; drawn over the "
                                     "painted labels")
        self.shape_class = SpinBox(label="Polygon class", value=1, min=1, max=255,
                                   tooltip="the class of shapes without a 'class' feature")
        self.points = ComboBox(label="Points", choices=self._optional("Points"),
                               tooltip="marked objects (detection); a 'class' feature gives their classes")
        self.area = ComboBox(label="Complete in", choices=self._optional("Shapes"),
                             tooltip="where every object was marked (points outside it are not negatives)")
        self.gis_button = PushButton(text="Load GIS annotations…", tooltip="points / polygons drawn in QGIS "
                                     "(GeoPackage, Shapefile, GeoJSON), reprojected onto a georeferenced image")
        self.encoders: list = []  # app.catalog.EncoderInfo, set by the dock once its catalogue is loaded
        self.base = ComboBox(label="Start from", choices=self._bases)
        self.random_init = CheckBox(text="Random init (fresh model)", value=False,
                                    tooltip="build a fresh model's encoder with random weights instead of its "
                                    "pretrained ones (the checkpoint is labelled random-init)")
        self.epochs = SpinBox(label="Epochs", value=10, min=1, max=1000)
        self.budget = SpinBox(label="Budget (s)", value=0, min=0, max=86400,
                              tooltip="wall-clock training budget in seconds (0: none, train the epochs set); "
                              f"Quick sets {QUICK_BUDGET_S} s when none is set")
        self.mode = ComboBox(label="Mode", choices=[("Full (train end to end)", "full"),
                                                    ("Quick (frozen encoder, cached features)", "quick")],
                             value="full", tooltip="Quick encodes each region once and trains the context encoder "
                             "and heads over the cached features: fast, best with a pretrained encoder")
        self.freeze = CheckBox(text="Freeze region encoder", value=False,
                               tooltip="large (foundation-model) encoders are kept frozen either way; Quick always "
                               "freezes")
        self.zero_unlabelled = CheckBox(text="Label 0 = not annotated", value=True)
        self.preview = CheckBox(text="Then predict the regions in view", value=True,
                                tooltip="run the trained model on what the canvas shows and overlay it "
                                "('xT preview' layer), so you can correct the labels and Train again")
        self.out = FileEdit(label="Save as", mode=FileDialogMode.OPTIONAL_FILE, filter="*.safetensors",
                            value=self._default_out())
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.status = Label(value="Paint labels, outline shapes or add points on an image, then Train.")
        self.extend([self.image, self.labels_layer, self.shapes_layer, self.shape_class, self.points, self.area,
                     self.gis_button, self.base, self.random_init, self.mode, self.epochs, self.budget, self.freeze,
                     self.zero_unlabelled, self.preview, self.out])
        self.suggest = SuggestPanel(self)  # after each Train: where to annotate next (widget/_suggest.py)
        # straight into the layout: magicgui gives a non-button widget a label column, which widened the dock by 90 px
        self.native.layout().addWidget(self.suggest.native)
        #: Train / Stop and the status, pinned below the scrolling fields by the dock (``_window.scrolling``)
        self.footer = Container(widgets=[Container(widgets=[self.train_button, self.stop_button],
                                                   layout="horizontal", labels=False), self.status], labels=False)
        self.footer.margins = (4, 0, 4, 2)
        self.curve = CurveView()
        self.native.layout().addWidget(self.curve)
        steady_line(self.status.native, lines=4)  # a longer text is cut; whole in the tooltip
        self.status.changed.connect(lambda text: self.status.native.setToolTip(str(text)))
        self.status.native.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.train_button.changed.connect(self.start)
        self.gis_button.changed.connect(lambda _=None: load_gis_annotations(self.viewer, self.image.value, self.native))
        self.stop_button.changed.connect(self.stop)
        self.image.changed.connect(lambda _v: setattr(self.out, "value", self._default_out()))
        self.mode.changed.connect(self._on_mode)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._relist)
        self.worker = None
        self.preview_worker = None
        self.handle = TrainHandle()  # the current Train's (its ``trainer`` is what it trained on: tests read it)
        self._preview_cancel = CancelHandle()
        self.overlay = PreviewOverlay(viewer)
        self._request: FinetuneRequest | None = None
        self._window_size = 2
        self._saved, self._preview_total = "", 0
        #: perf_counter marks of the last Train: pressed, started (data and model ready, initial validation done),
        #: trained (model saved), preview (its first region shown)
        self.marks: dict[str, float] = {}
        self.last: dict[str, TrainEvent] = {}  # the last "start" and "done" events (tests, benchmarks)
        self._closed = False
        self.native.destroyed.connect(self._on_destroyed)

    # -- lists -------------------------------------------------------------------------------------------------
    def _layers(self, kind: str):
        return lambda _w=None: [(layer.name, layer) for layer in self.viewer.layers if type(layer).__name__ == kind
                                and not _is_preview(layer)]

    def _optional(self, kind: str):
        return lambda _w=None: [("—", None)] + self._layers(kind)()

    def _bases(self, _w=None):
        """The default fresh model first (EfficientNet-Lite0 with the ImageNet weights its installed package ships,
        else the random-init tiny one: ``app.catalog.default_fresh_encoder``), then the tiny one, then fresh models of
        every catalogue encoder, grouped like the Run tab's picker and with their weight states ("fresh · pathology ·
        uni  [needs a token]"), then every listed model."""
        default = default_fresh_encoder()
        first = [("fresh tiny model", FRESH + "tiny")]
        if default != "tiny":
            first.insert(0, (f"fresh {default} (pretrained)", FRESH + default))
        fresh = first + [(f"fresh · {info.label}", FRESH + info.name) for info in self.encoders
                         if info.name not in ("tiny", default)]
        return fresh + [(label, key) for label, key in self._model_choices()
                        if key != "__browse__" and label != "Browse…"]

    def set_encoders(self, encoders) -> None:
        """The catalogue's encoders (``app.catalog.EncoderInfo``, grouped, with weight states) for fresh models."""
        self.encoders = list(encoders)
        value = self.base.value
        self.base.reset_choices()
        if value in [key for _label, key in self._bases()]:
            self.base.value = value

    def _relist(self, _event=None) -> None:
        for combo in (self.image, self.labels_layer, self.shapes_layer, self.points, self.area):
            combo.reset_choices()

    def _on_mode(self, mode) -> None:
        if mode == "quick" and not self.budget.value:
            self.budget.value = QUICK_BUDGET_S

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
        if self.labels_layer.value is None and self.points.value is None and self.shapes_layer.value is None:
            notifications.show_error("Fine-tune: choose a Labels layer, a Shapes layer (polygons) or a Points layer "
                                     "with your annotations.")
            return None
        out = Path(str(self.out.value))
        if out.suffix != ".safetensors":
            out = out.with_suffix(".safetensors")
        if out.exists():
            notifications.show_error(f"Fine-tune: {out.name} exists; choose another file name (nothing is "
                                     "overwritten).")
            return None
        out.parent.mkdir(parents=True, exist_ok=True)
        key = str(self.base.value)
        fresh = key.startswith(FRESH)
        encoder = key[len(FRESH):] if fresh else "tiny"
        info = next((i for i in self.encoders if i.name == encoder), None)
        # a fresh encoder loads its pretrained weights whenever it has some; only "Random init" (or an encoder with
        # no weights at all, such as tiny) builds random ones, and the checkpoint says so
        pretrained = fresh and not self.random_init.value and not (info is None or info.random_init)
        options = TrainOptions(out=str(out), base=None if fresh else key, region_encoder=encoder,
                               pretrained=pretrained, epochs=int(self.epochs.value),
                               freeze_encoder=True if self.freeze.value else None, mode=str(self.mode.value),
                               time_budget_s=float(self.budget.value) or None,
                               # the loop's answer matters more than the untrained baseline (a whole validation pass)
                               initial_validation=self.mode.value != "quick")
        return FinetuneRequest(self.image.value, self.labels_layer.value, self.points.value, self.area.value,
                               zero_is_unlabelled=bool(self.zero_unlabelled.value),
                               shapes_layer=self.shapes_layer.value, shape_class=int(self.shape_class.value),
                               options=options)

    def start(self, _=None) -> None:
        if self.worker is not None:
            return
        self._cancel_preview()
        t0 = time.perf_counter()
        request = self.request()
        if request is None:
            return
        self.marks = {"train": t0}
        self._request, self.handle = request, TrainHandle()
        self.curve.clear()
        self.status.value = "preparing (reading annotations, building the model)…"
        worker = create_worker(training_events, request, self.handle, _progress={"desc": "xT fine-tune"},
                               _ignore_errors=True)
        worker.yielded.connect(self._on_event)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker, self._out = worker, request.options.out
        self._set_running(True)
        worker.start()

    def stop(self, _=None) -> None:
        if self.worker is None:
            self._cancel_preview()
            return
        started = self.handle.trainer is not None
        self.handle.cancel()  # the trainer ends after this window; a trainer still being built never starts
        if started:
            self.status.value = "stopping after this window (the best checkpoint so far is kept)…"
        elif self.worker is not None:
            self.worker.quit()

    def _on_event(self, e: TrainEvent) -> None:
        if self._closed:
            return
        if isinstance(e, TrainStarted | TrainFinished):
            kind = "start" if isinstance(e, TrainStarted) else "done"
            self.last[kind] = e
            self.marks.setdefault("started" if kind == "start" else "done", time.perf_counter())
        if isinstance(e, TrainStarted):
            init = e.initial.get("score")
            if isinstance(init, float):
                self.curve.val.append(max(init, 0.0))
            self._window_size = int(e.window_size or 2)
            note = f" · {e.note}" if e.note else ""
            self.status.value = f"training on {e.train_windows} windows, validating on {e.val_windows}{note}"
        elif isinstance(e, StepDone):
            self.curve.loss.append(float(e.loss))
            eta = f" · ETA {e.eta_s:.0f} s" if e.eta_s else ""
            self.status.value = f"epoch {e.epoch} · step {e.step}/{e.steps} · loss {e.loss:.3f}{eta}"
        elif isinstance(e, EpochDone):
            score = (e.val or {}).get("score")
            if isinstance(score, float) and not math.isnan(score):
                self.curve.val.append(score)
            self.status.value = (f"epoch {e.epoch}/{e.epochs} · loss {e.loss:.3f} · val {_metrics(e.val)}"
                                 + _per_class(e.val or {}))
        elif isinstance(e, TrainFinished):
            final = _metrics(e.final or {})
            self._saved = (f"saved {Path(e.out).name} (best epoch {e.best_epoch}, {final}); selected "
                           "in the Run tab")
            self.status.value = self._saved
            self.marks["trained"] = time.perf_counter()
            self._on_trained(e.out)
            self._continue_from(e.out)
            tasks = e.tasks
            if self.preview.value and self._request is not None and ("segmentation" in tasks or "detection" in tasks):
                self.start_preview(e.out, self._request.image_layer)
            if self._request is not None and ("segmentation" in tasks or "detection" in tasks):
                self.suggest.after_train(e.out, self._request.image_layer)
        self.curve.update()

    def _continue_from(self, path: str) -> None:
        """The interactive loop: the next Train starts from the model just saved (correct the labels, Train again)."""
        self.base.reset_choices()
        if any(value == path for _label, value in self._bases()):
            self.base.value = path
        self.out.value = self._default_out()

    # -- the prediction overlay --------------------------------------------------------------------------------------
    def start_preview(self, model: str, image_layer) -> None:
        """Run ``model`` on the regions in view in a worker; its regions appear in the "xT preview" layer."""
        self._cancel_preview()
        request = PreviewRequest(image_layer, model, visible_box(self.viewer, image_layer),
                                 window_size=self._window_size)
        self._preview_cancel = CancelHandle()
        worker = create_worker(preview_events, request, self._preview_cancel, _ignore_errors=True,
                               _progress={"desc": "xT: predicting the view"})
        worker.yielded.connect(lambda e, layer=image_layer: self._on_preview_event(e, layer))
        worker.errored.connect(self._on_preview_error)
        worker.finished.connect(self._on_preview_finished)
        self.preview_worker = worker
        self.stop_button.enabled = True
        worker.start()

    def _on_preview_event(self, e, image_layer) -> None:
        if self._closed:
            return
        if isinstance(e, PreviewReady):
            self.overlay.show(e, image_layer)
            self._preview_total = int(e.regions)
        elif isinstance(e, RegionDone):
            self.overlay.region_done(e.detections)
            if "preview" not in self.marks:
                self.marks["preview"] = time.perf_counter()
            self.status.value = self._saved + f"\npredicting the view: {self.overlay.regions_shown}/" \
                f"{self._preview_total} regions"
        elif isinstance(e, RunFinished):
            self.overlay._refresh()
            done = "" if e.status == "complete" else f" ({e.status})"
            self.status.value = self._saved + f"\nthe view's {self.overlay.regions_shown} regions predicted{done}: " \
                "correct the labels and Train again to continue from this model"

    def _on_preview_finished(self) -> None:
        self.preview_worker = None
        if not self._closed:
            self._set_running(self.worker is not None)

    def _on_destroyed(self, *_args) -> None:
        """The viewer is closing: stop training and the preview, and stop touching widgets that are gone."""
        self._closed = True
        self.handle.cancel()
        self._cancel_preview()

    def _cancel_preview(self) -> None:
        if self.preview_worker is not None:
            self._preview_cancel.cancel()

    def _on_preview_error(self, err: BaseException) -> None:
        if self._closed:
            return
        text = str(err).strip() or type(err).__name__
        notifications.show_error(f"Fine-tune: the model was saved, but predicting the view failed: {text}")
        self.status.value = self._saved + f"\nthe view was not predicted: {text}"

    def _on_error(self, err: BaseException) -> None:
        if self._closed:
            return
        text = str(err).strip() or type(err).__name__
        notifications.show_error(f"Fine-tune: {text}")
        self.status.value = f"not trained: {text}"

    def _on_finished(self) -> None:
        self.worker = None
        if not self._closed:
            self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.train_button.enabled = not running
        self.stop_button.enabled = running or self.preview_worker is not None


def _is_preview(layer) -> bool:
    """The tab's own prediction overlay: never offered as annotations (a model must not train on its own guesses)."""
    meta = (getattr(layer, "metadata", None) or {}).get("napari_xt") or {}
    return "preview_store" in meta or "suggestions" in meta  # nor its suggestions and their heat map


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
