"""The panel's fields: what each combo lists, the model catalogue behind them, how the chosen model is described and
the status line (no Qt objects kept here)."""

from __future__ import annotations

import html
import math

import numpy as np

from ._heap import freeze_long_lived

BROWSE = "__browse__"
NO_ROI = None


def warm_imports() -> None:
    """Import, off the main thread, what napari imports lazily when the first Labels/Points layer is made (pandas,
    scikit-image's colour module, scipy): ~0.5 s that would otherwise stall the viewer at the first overlay."""
    import contextlib
    import importlib

    for name in ("pandas", "skimage.color", "scipy.linalg"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    warm_vispy_dashes()


def warm_vispy_dashes() -> None:
    """Fill vispy's dash-pattern cache off the main thread.

    The first line visual of a process builds vispy's dash atlas: 13 patterns of 1024 steps of numpy in Python,
    100-140 ms inside the first Labels layer's polygon overlay, i.e. in the click on Run (issue 25, profiled with
    ``benchmarks/bench_widget.py --sample``). vispy caches the patterns per process (``functools.lru_cache``), so
    building one atlas here, in the catalogue worker, leaves the click only a cache lookup.
    """
    try:
        from vispy.visuals.line.dash_atlas import DashAtlas
    except ImportError:  # a vispy that moved it: the click pays as before
        return
    DashAtlas()


def load_catalog(folder: str):
    """(catalog, infos of the models folder's checkpoints, sentences about the files skipped); for a worker."""
    from ..app import catalog

    warm_imports()
    cat = catalog.load_catalog()
    files, problems = [], []
    for path in catalog.find_checkpoints(folder):
        try:
            files.append(catalog.describe(path))
        except ValueError as err:
            problems.append(str(err))
    freeze_long_lived()  # torch, timm and napari are loaded: full collections no longer walk them (_heap.py)
    return cat, files, problems


def models_folder_setting() -> str:
    """The "models folder" plugin setting (Preferences > napari-xt); "" when unset or unsupported."""
    try:
        from napari.settings import get_plugin_settings

        return str(get_plugin_settings("napari-xt").models.folder or "")
    except Exception:
        return ""


def results_folder_setting() -> str:
    """The "results folder" plugin setting; "" when unset (the user data directory is used) or unsupported."""
    try:
        from napari.settings import get_plugin_settings

        return str(get_plugin_settings("napari-xt").results.folder or "")
    except Exception:
        return ""


def image_layer_choices(viewer) -> list[tuple[str, object]]:
    from napari.layers import Image

    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


def roi_choices(viewer) -> list[tuple[str, object]]:
    from napari.layers import Shapes

    return [("whole image", NO_ROI)] + [(f"shapes: {layer.name}", layer) for layer in viewer.layers
                                        if isinstance(layer, Shapes)]


def resolution_choices(layer) -> list[tuple[str, object]]:
    """"model default" plus one entry per pyramid level of ``layer``, with its pixel size when known."""
    out: list[tuple[str, object]] = [("model default", None)]
    if layer is None:
        return out
    from ..app.layers import layer_pixel_size

    levels = list(layer.data) if getattr(layer, "multiscale", False) else [layer.data]
    ps = layer_pixel_size(layer)
    units = getattr(layer, "units", None)
    unit = str(units[-1]) if units is not None and len(units) else ""
    h0 = levels[0].shape[0]
    for i, level in enumerate(levels):
        ds = h0 / level.shape[0]
        size = f"{level.shape[0]} x {level.shape[1]}"
        if ps is not None and unit not in ("", "pixel"):
            out.append((f"level {i}: {ps[0] * ds:.3g} {unit}/px ({size})", i))
        else:
            out.append((f"level {i}: 1/{ds:.3g} ({size})", i))
    return out


def layer_kind(layer) -> str:
    """The image kind our reader/sample data recorded on a layer ("brightfield", "sar", ...), else ""."""
    meta = (getattr(layer, "metadata", None) or {}).get("napari_xt") or {}
    return str(meta.get("kind") or "")


def describe_html(info, warn_random: bool = True) -> str:
    """The chosen model in a few lines: tasks, geometry and coloured class names."""
    from ..palette import rgba

    if info is None:
        return "<i>no model</i>"
    lines = [f"<b>{html.escape(info.label)}</b>"]
    geo = f"{', '.join(info.tasks) or 'no head'} · regions {info.region_size} px"
    if info.pixel_size:
        unit = "m" if info.input_kind == "sar" else "µm"
        geo += f" at {info.pixel_size:.3g} {unit}/px"
    geo += f" · {info.in_chans} channel(s)"
    lines.append(geo)
    if info.class_names:
        colors = rgba(info.class_names, info.class_colors)
        swatches = []
        for i, (name, c) in enumerate(zip(info.class_names, colors, strict=False)):
            colour = "transparent" if i == 0 else "#" + "".join(f"{round(v * 255):02x}" for v in c[:3])
            swatches.append(f"<span style='background:{colour}'>&nbsp;&nbsp;</span> {html.escape(name)}")
        lines.append(" ".join(swatches))
    if info.description:
        lines.append(f"<i>{html.escape(info.description)}</i>")
    if info.source == "demo" and "DEMO" not in (info.description or ""):
        lines.append("<b>DEMO model</b>: trained on synthetic images; not for clinical or operational use")
    if info.random_init and warn_random:
        lines.append("<i>random weights: shows the mechanics, not meaningful results</i>")
    return "<br>".join(lines)


def format_status(n_done: int, n_total: int, rate: float | None, state: str = "") -> str:
    """'7 / 12 regions · 1.9 regions/s · ETA 3 s'."""
    text = f"{n_done} / {n_total} regions"
    if rate and rate > 0 and math.isfinite(rate):
        text += f" · {rate:.2g} regions/s"
        left = max(0, n_total - n_done)
        if left and state in ("running", ""):
            text += f" · ETA {_duration(left / rate)}"
    if state:
        text += f" · {state}"
    return text


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def camera_center(viewer) -> np.ndarray:
    return np.asarray(camera(viewer).center, dtype=float)[-2:]
