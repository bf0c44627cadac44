"""The "xT analysis" dock: pick an image and a model, Run / Cancel / Resume, watch regions appear.

Thin by design: the :class:`~napari_xt.widget._panel.RunPanel`'s fields in, the fields of a
:class:`~napari_xt.app.request.PredictRequest` out, handed to the :class:`Runner`; results are shown by
:class:`Overlays`. Model lists come from the model zoo through ``app.catalog``, loaded in a worker at start-up so
``import torch`` never blocks the viewer.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from magicgui.widgets import Container
from napari.qt.threading import create_worker
from napari.utils import notifications
from qtpy.QtWidgets import QTabWidget
from superqt.utils import qdebounced

from .._compat import keep_triton_out_without_cuda, partial_labels_refresh_supported
from ..app import catalog
from ..app.events import RegionDone, RegionFailed, RunFinished
from ..app.layers import default_store_path, results_dir, unique_store_path, world_to_level0
from ..app.request import PredictRequest
from ..engine.options import DEFAULT_SCORE_THRESHOLD
from ..store import is_store, read_meta
from . import _fields as F
from ._encoder_picker import EncoderPicker
from ._export import ExportButton
from ._finetune import FinetuneTab
from ._memory import DockMemory
from ._messages import describe
from ._overlays import Overlays
from ._panel import FIELDS, RunPanel
from ._request import build_request
from ._runner import Runner
from ._wheel import guard_wheel
from ._window import compact_fields, scrolling

#: the model selected at start when the models folder has none: the shipped demo, else a random-weight preset
DEFAULT_MODELS = ("demo-tissue", "tiny-hyper-seg", "tiny-xl-seg")


class XTDock(Container):
    """The napari-xt dock widget; ``XTDock(viewer)``. Its Run panel is ``dock.panel``; the panel's widgets are also
    reachable as attributes of the dock (``dock.model``, ``dock.run_button``…)."""

    def __init__(self, napari_viewer, models_folder: str | None = None):
        super().__init__(labels=False)
        keep_triton_out_without_cuda()  # before any of this dock's workers imports timm (GL context exists already)
        partial_labels_refresh_supported()  # probe napari's private API once; logs if whole-layer refreshes it is
        self.viewer = napari_viewer
        self.runner = Runner()
        self.overlays = Overlays(napari_viewer)
        self.catalog: catalog.Catalog | None = None
        self._infos: dict[str, catalog.ModelInfo] = {}
        self._previous_model: str | None = None
        self._out_auto, self._setting_out = True, False
        self._run_layer: Any = None
        self._run_info: catalog.ModelInfo | None = None
        self._t_start, self._done_start = 0.0, 0
        self._read_warned = False
        self._browse_worker = None
        self.models_folder = F.models_folder_setting() if models_folder is None else models_folder
        self.memory = DockMemory(self)  # the user's last choices (results folder now, the rest with the catalogue)

        self.panel = RunPanel(self)
        for name in FIELDS:
            setattr(self, name, getattr(self.panel, name))
        self.out.tooltip = (f"The result store (zarr). New runs go to {results_dir(self.memory.results_folder())} "
                            "(Preferences > Plugins > napari-xt > Results folder), never beside the image.")
        self.encoder_picker = EncoderPicker(partial(build_request, self, False), lambda: not self.runner.busy)
        self.encoder_picker.place(self.panel, after=self.model_info, replacing=self.region_encoder)
        self.export_button = ExportButton(self._store_for_export, self)
        self.panel.append(self.export_button)
        self.finetune = FinetuneTab(napari_viewer, self.model_choices, self._on_trained, self.models_folder)
        compact_fields(self.finetune.native)  # as narrow as its labels need, not its longest name (Run: done)
        self.tabs = QTabWidget()
        self.tabs.addTab(scrolling(self.panel.native, self.panel.footer.native), "Run")
        self.tabs.addTab(scrolling(self.finetune.native, self.finetune.footer.native), "Fine-tune")
        self.native.layout().addWidget(self.tabs)
        guard_wheel(self.native)  # scrolling the dock never changes a field the user did not click into
        self.margins = (0, 0, 0, 0)

        for field in (self.image, self.device, self.precision, self.resolution, self.region_size, self.use_mask):
            field.changed.connect(self.encoder_picker.schedule)  # the time estimate follows what the run would do
        self.image.changed.connect(self._on_image_changed)
        self.model.changed.connect(self._on_model_changed)
        self.out.changed.connect(self._on_out_edited)
        self.min_score.changed.connect(self.overlays.set_min_score)
        self.score_class.changed.connect(self._on_score_class)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.resume_button.changed.connect(self.resume)
        self.runner.prepared.connect(self._on_prepared)
        self.runner.region.connect(self._on_region)
        self.runner.window.connect(self._on_window)
        self.runner.ended.connect(self._on_ended)
        self.runner.failed.connect(self._on_failed)
        self.runner.state_changed.connect(self._update_buttons)
        self.native.destroyed.connect(partial(Runner.detach, self.runner))  # strong: the dock may be gone first
        self._on_camera_moved = qdebounced(self._prioritise_view, timeout=300)
        F.camera(self.viewer).events.center.connect(self._on_camera_moved)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._on_layers_changed)

        self._on_image_changed(self.image.value)
        self._adopt_opened_store()
        self._update_buttons()
        worker = create_worker(F.load_catalog, self.models_folder, _ignore_errors=True)
        worker.returned.connect(self._on_catalog)
        worker.errored.connect(lambda e: self._notify_error(f"napari-xt cannot list its models: {e}"))
        self._catalog_worker = worker
        worker.start()

    # -- what the combos list (the panel asks) -------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.catalog is not None

    def catalog_list(self, name: str) -> list:
        return getattr(self.catalog, name) if self.catalog else []

    def model_choices(self, _w=None):
        return [(info.label, key) for key, info in self._infos.items()] + [("Browse…", F.BROWSE)]

    def precisions(self, _w=None):
        cuda = any(d.startswith("cuda") for d in self.catalog_list("devices"))
        return ["auto", "fp32", "bf16"] + (["fp16"] if cuda else [])  # auto: bf16 on CUDA, fp32 on the CPU

    def resolution_choices(self, _w=None):
        return F.resolution_choices(self.image.value if hasattr(self, "image") else None)

    def score_class_choices(self, _w=None):
        layout = self.overlays.scores.layout
        return [("top class", None)] + ([(n, i) for i, n in enumerate(layout.class_names)] if layout else [])

    def _on_catalog(self, result) -> None:
        cat, files, problems = result
        self.catalog = cat
        for info in [*cat.presets, *files]:
            self._infos[info.key] = info
        for combo in (self.region_encoder, self.context_encoder, self.device, self.precision):
            combo.reset_choices()
        self.encoder_picker.set_encoders(cat.encoders)
        self._refresh_models()
        preferred = ("demo-sar", *DEFAULT_MODELS) if F.layer_kind(self.image.value) == "sar" else DEFAULT_MODELS
        default = [i.key for i in files] or [k for k in preferred if k in self._infos]
        if default:
            self.model.value = default[0]
        self._on_model_changed(self.model.value)
        for problem in problems:
            notifications.show_warning(f"Skipped a file in the models folder: {problem}")
        self.finetune.set_encoders(cat.encoders)
        self.memory.restore()
        self._update_buttons()

    def _on_trained(self, path: str) -> None:
        """A model the Fine-tune tab just saved: list it and select it; show the Run tab unless the tab's
        interactive loop (preview the view, correct, Train again) keeps the user in Fine-tune."""
        if self.add_checkpoint(path):
            self.finetune.refresh_models()
            if not self.finetune.preview.value:
                self.tabs.setCurrentIndex(0)

    def _on_layers_changed(self, _event=None) -> None:
        self.image.reset_choices()
        self.roi.reset_choices()
        self._adopt_opened_store()

    def _adopt_opened_store(self) -> None:
        """A result store opened in napari (its layers carry the store path): point Results at it, so Export and
        Resume work on it, unless the user already chose a store or a run is going."""
        if not self._out_auto or self.runner.busy:
            return
        for layer in self.viewer.layers:
            store = ((layer.metadata or {}).get("napari_xt") or {}).get("store")
            if store and is_store(store):
                self._set_out(Path(store))
                self._out_auto = False
                return

    # -- the model ---------------------------------------------------------------------------------------------------
    def add_checkpoint(self, path) -> bool:
        """Add a checkpoint file to the model list and select it; a notification says why when it cannot be used."""
        try:
            info = catalog.describe(path)
        except ValueError as err:
            self._not_a_checkpoint(err)
            return False
        self._add_info(info)
        return True

    def _add_info(self, info) -> None:
        self._infos[info.key] = info
        self._refresh_models()
        self.model.value = info.key

    def _not_a_checkpoint(self, err) -> None:
        self._notify_error(str(err))
        self.model.value = self._previous_model if self._previous_model in self._infos else self.model.value

    def _browse(self) -> None:
        """Ask for a checkpoint file and read its config in a worker (a released .ckpt is hundreds of MB)."""
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(self.native, "Choose an xT checkpoint", self.models_folder or "",
                                              "Checkpoints (*.safetensors *.ckpt *.pth)")
        if self._previous_model in self._infos:
            self.model.value = self._previous_model  # until the file is read
        if not path:
            return
        self.model_info.value = f"<i>reading {Path(path).name}…</i>"
        worker = create_worker(catalog.describe, path, _ignore_errors=True)
        worker.returned.connect(self._add_info)
        worker.errored.connect(self._not_a_checkpoint)
        worker.finished.connect(lambda: setattr(self, "_browse_worker", None))
        self._browse_worker = worker
        worker.start()

    def _refresh_models(self) -> None:
        """Re-list the models, keeping "Browse…" last (magicgui appends new choices at the end)."""
        with self.model.changed.blocked():
            if F.BROWSE in self.model.choices:
                self.model.del_choice("Browse…")
            self.model.reset_choices()

    def _on_model_changed(self, key) -> None:
        if key == F.BROWSE:
            self._browse()
            return
        info = self._infos.get(key)
        self._previous_model = key
        self.model_info.value = F.describe_html(info)
        self.encoder_picker.follow_model(info)
        if info is None:
            return
        self.region_size.value = info.region_size
        for combo, name in ((self.region_encoder, info.region_encoder), (self.context_encoder, info.context_encoder)):
            if name in combo.choices:  # a config naming an encoder this install lacks fails with a clear error at Run
                combo.value = name
        self.min_score.visible = "detection" in info.tasks
        # the threshold the model's training chose on its validation windows (the user may still move it)
        self.min_score.value = info.score_threshold if info.score_threshold is not None else DEFAULT_SCORE_THRESHOLD
        self.score_class.visible = self.top_classes.visible = "classification" in info.tasks

    def _on_image_changed(self, layer) -> None:
        self.resolution.reset_choices()
        if layer is not None and self._out_auto:
            self._set_out(default_store_path(layer, self.memory.results_folder()))
        self._update_buttons()

    def _set_out(self, path) -> None:
        self._setting_out = True
        try:
            self.out.value = Path(path)
        finally:
            self._setting_out = False

    def _on_out_edited(self, _value) -> None:
        if not self._setting_out:
            self._out_auto = False
        self._update_buttons()

    def _on_score_class(self, index) -> None:
        self.overlays.scores.choose(index)
        self._show_scores()

    # -- actions ---------------------------------------------------------------------------------------------------
    def _notify_error(self, message: str) -> None:
        notifications.show_error(message)
        self._update_buttons()

    def _request(self, resume: bool) -> tuple[PredictRequest, object] | None:
        built = build_request(self, resume)
        if isinstance(built, str):
            self._notify_error(built)
            return None
        return built

    def start(self, _=None) -> None:
        """Run: a new result store (an existing one is never replaced: a new name is picked)."""
        if self.runner.busy or not self.ready:
            return
        out = Path(self.out.value) if str(self.out.value) not in ("", ".") else None
        if out is None and self.image.value is not None:
            self._set_out(default_store_path(self.image.value, self.memory.results_folder()))
        elif out is not None and out.exists():
            new = unique_store_path(out)
            notifications.show_info(f"{out.name} already exists (Resume continues it); writing to {new.name}.")
            self._set_out(new)
        self._launch(resume=False)

    def resume(self, _=None) -> None:
        """Continue the store named in Results: only the regions not yet done are computed."""
        if not self.runner.busy and self.ready:
            self._launch(resume=True)

    def _launch(self, resume: bool) -> None:
        built = self._request(resume)
        if built is None:
            return
        request, layer = built
        self._run_layer, self._run_info = layer, self._infos[request.model]
        self._read_warned = False
        self.status.value = "opening the image and loading the model…"
        self.runner.start(request, layer)
        self.overlays.reserve(request.out, layer, self._run_info)  # while the worker prepares

    def cancel(self, _=None) -> None:
        self.runner.cancel()
        self.status.value = "cancelling after the batch in flight…"

    def _prioritise_view(self, _event=None) -> None:
        if self.runner.state == "running" and self._run_layer is not None:
            self.runner.prioritise(world_to_level0(self._run_layer, F.camera_center(self.viewer)))

    # -- runner events (main thread) ----------------------------------------------------------------------------
    def _on_prepared(self, run) -> None:
        layout = self.runner.layout
        self.overlays.attach(run.store.path, self._run_layer, self._run_info, run.plan.downsample_to_level0, layout,
                             levels=self.runner.label_levels)
        if layout is not None:
            with self.score_class.changed.blocked():
                chosen = self.score_class.value
                self.score_class.reset_choices()
                self.score_class.value = chosen if chosen in self.score_class.choices else None
            self._show_scores()
        if self.runner.request is not None and self.runner.request.resume and self.overlays.points is not None:
            self.overlays.load_existing_detections(run.store.detections())
        self._t_start, self._done_start = time.perf_counter(), run.n_done
        self.status.value = F.format_status(run.n_done, run.n_total, None, "running")

    def _on_region(self, payload: RegionDone | RegionFailed) -> None:
        if isinstance(payload, RegionDone):
            self.overlays.add_region(payload)
        elif not self._read_warned:
            self._read_warned = True
            notifications.show_warning(f"A region could not be read and was skipped: {payload.reason}")
        elapsed = time.perf_counter() - self._t_start
        rate = (payload.n_done - self._done_start) / elapsed if elapsed > 0 else None
        self.status.value = F.format_status(payload.n_done, payload.n_total, rate, "running")

    def _on_window(self, payload) -> None:
        self.overlays.add_window(payload)
        self._show_scores()

    def _show_scores(self) -> None:
        self.top_classes.value = self.overlays.scores.top_html()

    def _on_ended(self, end: RunFinished) -> None:
        self.overlays.release()  # cancelled before the run started: its layer never got a store
        if self.runner.layout is not None:
            self.overlays.scores.set_final(end.image_scores)
        self.overlays.flush(full=True)  # also the layer thumbnail, which partial updates leave as it was
        if self.runner.layout is not None:
            self._show_scores()
        s = end.summary
        done, total, store = s.regions_done, s.regions_total, Path(s.store).name
        self.status.value = F.format_status(done, total, s.regions_per_s, end.status)
        if end.status == "complete":
            notifications.show_info(f"xT analysis finished: {done} regions in {s.store}.")
        elif end.status == "cancelled":
            notifications.show_info(f"Cancelled: {done} of {total} regions are kept in {store}; Resume continues.")
        elif end.status == "failed":
            message = describe(end.error) if end.error is not None else "The run failed."
            notifications.show_error(f"{message} The {done} finished regions are kept in {store}; Resume "
                                     "continues from there.")
        elif s.regions_failed:
            notifications.show_warning(f"{s.regions_failed} region(s) could not be read; the others are done. Resume "
                                       "retries them.")
        self._update_buttons()

    def _on_failed(self, message: str) -> None:
        self.overlays.release()
        self.status.value = "not started"
        self._notify_error(message)

    def _update_buttons(self, _state=None) -> None:
        busy = self.runner.busy
        self.run_button.enabled = self.ready and not busy and self.image.value is not None
        self.cancel_button.enabled = self.runner.state in ("preparing", "running")
        out = str(self.out.value)
        resumable = False
        if not busy and self.ready and out not in ("", ".") and is_store(out):
            try:
                resumable = not read_meta(out).get("complete", False)
            except (OSError, ValueError):
                resumable = False
        self.resume_button.enabled = resumable
        self.export_button.enabled = (not busy and self.export_button.worker is None and out not in ("", ".")
                                      and is_store(out))

    def _store_for_export(self) -> str | None:
        out = str(self.out.value)
        return out if out not in ("", ".") and is_store(out) else None
