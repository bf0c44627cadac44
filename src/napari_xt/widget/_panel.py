"""The Run panel: every field, button and readout of one analysis, laid out in one container and nothing more.

Kept apart from the behaviour (``_dock.py`` wires it) so the dock can grow: the panel is one magicgui Container that
can later sit in a tab beside others (fine-tuning, export) without touching what it does.
"""

from __future__ import annotations

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    PushButton,
    SpinBox,
)

from . import _fields as F

#: the panel's widgets, in order; the dock exposes each under the same name (``dock.model``, ``dock.run_button``…)
FIELDS = ("image", "model", "model_info", "region_encoder", "context_encoder", "device", "precision", "batch_size",
          "resolution", "region_size", "context", "window_size", "use_mask", "roi", "out", "min_score",
          "score_class", "run_button", "cancel_button", "resume_button", "status", "top_classes")


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
        self.use_mask = CheckBox(text="Foreground only (skip empty background)", value=True)
        self.roi = ComboBox(label="Only inside", choices=lambda _w: F.roi_choices(source.viewer),
                            tooltip="First polygon or rectangle of a Shapes layer")
        self.out = FileEdit(mode="w", filter="*.xt.zarr")
        self.out.label = "Results"
        self.min_score = FloatSlider(label="Min score", value=0.3, min=0.0, max=1.0, step=0.05, visible=False)
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
                     self.window_size, self.use_mask, self.roi, self.out, self.min_score, self.score_class, buttons,
                     self.status, self.top_classes])
        for label in (self.model_info, self.top_classes):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(260)
        self.context.changed.connect(lambda v: setattr(self.window_size, "enabled", v == "window"))
