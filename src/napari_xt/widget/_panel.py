"""The Run panel: every field, button and readout of one analysis, laid out in one container and nothing more.

Kept apart from the behaviour (``_dock.py`` wires it) so the dock can grow: the panel is one magicgui Container that
can later sit in a tab beside others (fine-tuning, export) without touching what it does.
"""

from __future__ import annotations

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)
from superqt import QCollapsible

from ..engine.options import DEFAULT_SCORE_THRESHOLD, ORDERS, RunOptions
from . import _fields as F
from ._window import compact_fields, steady_line

#: run and plan options most runs leave alone, in a collapsed "Advanced" section (every option stays reachable)
ADVANCED_FIELDS = ("mpp", "overlap", "order", "probabilities", "max_detections", "prefetch", "read_workers")

#: the panel's widgets, in order; the dock exposes each under the same name (``dock.model``, ``dock.run_button``…)
FIELDS = ("image", "model", "model_info", "region_encoder", "context_encoder", "device", "precision", "batch_size",
          "resolution", "region_size", "context", "window_size", "use_mask", "roi", "out", "min_score",
          "score_class", "run_button", "cancel_button", "resume_button", "status", "top_classes",
          *ADVANCED_FIELDS, "reset_button")


class RunPanel(Container):
    """The widgets of the Run panel. ``source`` answers what the combos list (the dock: viewer, catalog, image)."""

    def __init__(self, source):
        super().__init__(labels=True)

        def listed(name):
            return lambda _w: source.catalog_list(name)

        self.image = ComboBox(label="Image", choices=lambda _w: F.image_layer_choices(source.viewer))
        self.model = ComboBox(label="Model", choices=source.model_choices)
        self.model_info = Label(value="<i>loading the model list…</i>")
        self.region_encoder = ComboBox(label="Region encoder", enabled=False, choices=listed("region_encoders"),
                                       tooltip="Set by the checkpoint's config (the registry's encoders)")
        self.context_encoder = ComboBox(label="Context encoder", enabled=False, choices=listed("context_encoders"),
                                        tooltip="Set by the checkpoint's config (the registry's encoders)")
        self.device = ComboBox(label="Device", choices=listed("devices"), tooltip="Devices detected on this machine")
        self.precision = ComboBox(label="Precision", choices=source.precisions)
        self.batch_size = SpinBox(label="Batch", value=2, min=1, max=64, tooltip="Regions encoded together")
        self.resolution = ComboBox(label="Resolution", choices=source.resolution_choices,
                                   tooltip="Analysis pixel size: the model's own, or a pyramid level")
        self.region_size = SpinBox(label="Region size", value=1024, min=64, max=16384, step=32)
        self.context = ComboBox(label="Context", choices=["window", "global"],
                                tooltip="window: context over blocks of regions; global: the whole image")
        self.window_size = SpinBox(label="Window", value=4, min=1, max=64, tooltip="Regions per window side")
        self.use_mask = CheckBox(text="Foreground only", value=True,
                                 tooltip="Skip regions of empty background (glass, no-data), found on a low level")
        self.roi = ComboBox(label="Only inside", choices=lambda _w: F.roi_choices(source.viewer),
                            tooltip="First polygon or rectangle of a Shapes layer")
        self.out = FileEdit(mode=FileDialogMode.OPTIONAL_FILE, filter="*.xt.zarr")
        self.out.label = "Results"
        defaults = RunOptions()
        self.min_score = FloatSlider(label="Min score", value=DEFAULT_SCORE_THRESHOLD, min=0.0, max=1.0, step=0.05,
                                     visible=False, tooltip="Detections scoring below this are not kept by the run "
                                     "(and hidden when raised afterwards)")
        self.score_class = ComboBox(label="Heat map", choices=source.score_class_choices, visible=False,
                                    tooltip="The class whose window scores the heat map shows")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel")
        self.resume_button = PushButton(text="Resume")
        buttons = Container(widgets=[self.run_button, self.cancel_button, self.resume_button], layout="horizontal",
                            labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.status = Label(value="")
        self.top_classes = Label(value="", visible=False)
        self.extend([self.image, self.model, self.model_info, self.region_encoder, self.context_encoder,
                     self.device, self.precision, self.batch_size, self.resolution, self.region_size, self.context,
                     self.window_size, self.use_mask, self.roi, self.out, self.min_score, self.score_class,
                     self.top_classes])
        #: the actions and the status line, pinned below the scrolling fields by the dock (``_window.scrolling``)
        self.footer = Container(widgets=[buttons, self.status], labels=False)
        self.footer.margins = (4, 0, 4, 2)
        for label in (self.model_info, self.top_classes):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(200)
        steady_line(self.status.native)  # updated per batch of regions during a run: must not relayout the window
        self.context.changed.connect(lambda v: setattr(self.window_size, "enabled", v == "window"))
        self._add_advanced(defaults)
        self.margins = (4, 4, 4, 4)  # the canvas needs the width more than the margins do
        compact_fields(self.native)

    def _add_advanced(self, defaults: RunOptions) -> None:
        self.mpp = FloatSpinBox(label="Pixel size", value=0.0, min=0.0, max=10000.0, step=0.25,
                                tooltip="Analysis pixel size in the image's unit when Resolution is 'model default' "
                                "(0: the model's own)")
        self.overlap = SpinBox(label="Overlap", value=0, min=0, max=4096, step=16, tooltip="Region overlap in px")
        self.order = ComboBox(label="Order", choices=list(ORDERS), tooltip="Order in which windows run")
        self.probabilities = CheckBox(text="Store class probabilities", value=defaults.probabilities)
        self.max_detections = SpinBox(label="Max objects", value=defaults.max_detections_per_region, min=1,
                                      max=100000, tooltip="At most this many detections per region")
        self.prefetch = SpinBox(label="Read ahead", value=defaults.prefetch, min=1, max=64,
                                tooltip="Regions read ahead of the model")
        self.read_workers = SpinBox(label="Read threads", value=defaults.read_workers, min=1, max=32)
        self.reset_button = PushButton(text="Reset to defaults", tooltip="Forget the remembered choices (model, "
                                       "device, results folder, these options) and go back to the defaults")
        self.advanced: Container = Container(widgets=[self.mpp, self.overlap, self.order, self.probabilities,
                                           self.max_detections, self.prefetch, self.read_workers,
                                           self.reset_button], labels=True)
        self.advanced_section = QCollapsible("Advanced")
        self.advanced_section.addWidget(self.advanced.native)
        self.native.layout().addWidget(self.advanced_section)
