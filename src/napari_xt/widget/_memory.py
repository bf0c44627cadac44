"""The dock remembers the user's last choices across napari sessions, and forgets them on *Reset to defaults*.

A first user had to pick the model, device, results folder and every advanced option again at each start (issue 23).
The choices live in a small JSON file in napari-xt's user config folder (``platformdirs``; ``$NAPARI_XT_CONFIG``
names another folder: the tests use a temporary one), written whenever a remembered field changes (a few hundred
bytes; fields do not change while a run goes). A plain file rather than napari's settings: the dock's choices are
not preferences a user edits in a dialog, and napari validates its settings file against the plugin's schema.

Remembered: the model (a zoo name, or a ``.safetensors`` file that still exists), device, precision, batch, context,
window, foreground-only, min score, the Advanced options, and the folder of a Results path the user chose. Not
remembered: what follows the image or the model (image, resolution, region size, ROI).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..app.layers import default_store_path, results_dir
from . import _fields as F
from ._panel import ADVANCED_FIELDS

log = logging.getLogger(__name__)

#: the panel fields whose values are remembered, after the model (its choice resets the region size and encoders)
REMEMBERED = ("device", "precision", "batch_size", "context", "window_size", "use_mask", "min_score",
              *ADVANCED_FIELDS)


def settings_path() -> Path:
    """``dock.json`` in ``$NAPARI_XT_CONFIG``, else in napari-xt's user config folder."""
    env = os.environ.get("NAPARI_XT_CONFIG")
    if env:
        return Path(env) / "dock.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-xt")) / "dock.json"


class DockMemory:
    """Made by the dock before its first default store path (the remembered results folder counts), applied by
    :meth:`restore` once the catalogue has filled the model and device lists."""

    def __init__(self, dock: Any):
        self.dock = dock
        self.path = settings_path()
        self.saved = self._load()
        folder = self.saved.get("results")
        self.results: str | None = folder if isinstance(folder, str) and Path(folder).is_dir() else None
        self.defaults: dict[str, Any] = {}
        self._applying = True  # until restore(): the dock's own start-up choices are not the user's

    def results_folder(self) -> str:
        """Where new stores go: the folder of the user's last chosen Results path, else the plugin setting."""
        return self.results or F.results_folder_setting()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:  # unreadable or not JSON: start from the defaults, say why in the log
            log.warning("ignoring the dock's remembered settings %s: %s", self.path, err)
            return {}
        return data if isinstance(data, dict) else {}

    def restore(self) -> None:
        """Note the defaults (for Reset), apply the remembered choices, then remember every later change."""
        dock = self.dock
        self.defaults = self.snapshot()
        self.apply(self.saved)
        self._applying = False
        for name in ("model", *REMEMBERED):
            getattr(dock, name).changed.connect(self.save)
        dock.out.changed.connect(self._on_out)
        dock.panel.reset_button.changed.connect(self.reset)

    def snapshot(self) -> dict[str, Any]:
        dock = self.dock
        model = dock.model.value if dock.model.value in dock._infos else dock._previous_model
        values = {name: getattr(dock, name).value for name in REMEMBERED}
        return {"model": model, **values, "results": self.results}

    def apply(self, values: dict[str, Any]) -> None:
        dock, self._applying = self.dock, True
        try:
            model = values.get("model")
            if isinstance(model, str) and model in dock._infos:
                dock.model.value = model
            elif isinstance(model, str) and model.endswith(".safetensors") and Path(model).is_file():
                dock.add_checkpoint(model)  # reads the header only (a released .ckpt is not read here: too big)
            for name in REMEMBERED:
                if name in values:
                    _set(getattr(dock, name), values[name])
        finally:
            self._applying = False
        dock.out.tooltip = (f"The result store (zarr). New runs go to {results_dir(self.results_folder())} unless "
                            "you choose another folder here (remembered); Preferences > Plugins > napari-xt > "
                            "Results folder sets the default.")
        if dock._out_auto and dock.image.value is not None:
            dock._set_out(default_store_path(dock.image.value, self.results_folder()))

    def save(self, _value: Any = None) -> None:
        if self._applying:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.snapshot(), indent=1, default=str), encoding="utf-8")
        except OSError as err:  # a read-only home must not break the dock: the choices are just not remembered
            log.warning("cannot remember the dock's settings in %s: %s", self.path, err)

    def _on_out(self, value: Any) -> None:
        """A Results path the user chose: its folder is where later runs go (the dock's own picks are not)."""
        dock = self.dock
        if dock._setting_out or self._applying or str(value) in ("", "."):
            return
        self.results = str(Path(value).parent)
        self.save()

    def reset(self, _value: Any = None) -> None:
        """Forget the remembered choices: the defaults come back, and Results goes back to the default folder."""
        self.results = None
        self.apply(self.defaults)
        self.dock._out_auto = True
        self.apply({})  # the default Results path for the image
        try:
            self.path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("cannot remove %s: %s", self.path, err)


def _set(field: Any, value: Any) -> None:
    """Set a magicgui field to a remembered value unless the value no longer fits (a device gone, a changed range)."""
    choices = getattr(field, "choices", None)
    if choices is not None and value not in choices:
        return
    try:
        field.value = value
    except (ValueError, TypeError) as err:
        log.debug("not restoring %s = %r: %s", getattr(field, "name", "?"), value, err)
