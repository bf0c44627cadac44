"""Environment workarounds, in one place, called explicitly at the entry points that need them.

Two kinds live here, each a bet on something outside the project that may change:

* **The triton guard** (:func:`keep_triton_out_without_cuda`). Called first by every entry point that may end up
  importing timm/torchvision: the CLI's ``main``, ``napari-xt demo``, the dock's constructor, the reader, the
  fine-tune worker and the batch worker. It imports nothing heavy (no torch), so the dock can call it on the GUI
  thread.
* **napari private attributes** used to refresh only the part of a Labels layer a finished region changed
  (``Labels._slice``, ``Labels._slice_input``, ``Colormap._data_to_texture``, ``events.labels_update``). The widget
  reaches them only through :func:`labels_slice` and :func:`labels_texture`; :func:`partial_labels_refresh_supported`
  probes a real layer once (the dock calls it when built) and a test asserts it on the pinned napari, so a rename
  shows up as a failing test and a log line rather than as a silently slower viewer.

Nothing here is imported at module import time beyond the standard library: the CLI never pays for napari.
"""

from __future__ import annotations

import functools
import importlib.abc
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["keep_triton_out_without_cuda", "labels_slice", "labels_texture", "partial_labels_refresh_supported"]


# -- triton ------------------------------------------------------------------------------------------------------
def _cuda_available(torch: ModuleType) -> bool:
    return bool(torch.cuda.is_available())


def _block_triton() -> None:
    sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError; find_spec -> None


class _TritonGate(importlib.abc.MetaPathFinder):
    """Decides about triton at the moment something first imports it (torch is loaded by then: only the torch
    ecosystem imports triton), so installing the guard never costs a torch import."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> None:
        if fullname != "triton":
            return None
        torch = sys.modules.get("torch")
        if torch is None or not hasattr(torch, "cuda"):  # torch absent or still initialising: not our call yet
            return None
        _remove_gate()
        if not _cuda_available(torch):
            _block_triton()
            raise ModuleNotFoundError("triton is kept out without CUDA (napari_xt._compat)", name="triton")
        return None


def _remove_gate() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TritonGate)]


def keep_triton_out_without_cuda() -> None:
    """Make ``import triton`` fail in a process without CUDA, before torchvision/timm get imported.

    In napari on Mesa's software OpenGL (llvmpipe: virtual machines, Xvfb, remote desktops), loading triton's LLVM
    after Mesa's crashes the process (segfault, reproduced here) when timm imports torchvision. Triton only compiles
    CUDA kernels, so without CUDA torch loses nothing by treating it as absent. Idempotent and cheap: when torch is
    not imported yet the decision waits, in an import hook, for the first ``import triton``.
    """
    if "triton" in sys.modules:
        return
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "cuda"):
        _remove_gate()
        if not _cuda_available(torch):
            _block_triton()
        return
    if not any(isinstance(f, _TritonGate) for f in sys.meta_path):
        sys.meta_path.insert(0, _TritonGate())


# -- napari private attributes (partial Labels refresh) ----------------------------------------------------------
def labels_slice(layer: Any) -> tuple[Any, Any] | None:
    """``(slice response, slice input)`` of a napari Labels layer (private ``_slice``/``_slice_input``), or None.

    The slice response holds ``image.raw`` (the displayed tile's label values) and ``image.view`` (its colour
    texture); the input says which dims are displayed.
    """
    sl = getattr(layer, "_slice", None)
    si = getattr(layer, "_slice_input", None)
    if sl is None or si is None:
        return None
    return sl, si


def labels_texture(layer: Any, block: Any) -> Any:
    """Label values -> the texture values napari uploads for them (private ``Colormap._data_to_texture``)."""
    return layer.colormap._data_to_texture(block)


@functools.cache
def partial_labels_refresh_supported() -> bool:
    """Whether this napari has what the partial Labels refresh uses; probed once on a real (viewer-less) layer.

    False (with a warning naming the napari version) means the dock refreshes whole layers: correct, only slower.
    """
    try:
        import numpy as np
        from napari.layers import Labels

        layer = Labels(np.zeros((4, 4), dtype=np.uint8))
        found = labels_slice(layer)
        missing = [] if found is not None else ["Labels._slice / Labels._slice_input"]
        if found is not None:
            image = found[0].image
            missing += [f"slice.image.{a}" for a in ("raw", "view") if not hasattr(image, a)]
            missing += [] if hasattr(found[1], "ndisplay") and hasattr(found[1], "order") else ["slice_input.order"]
        if not callable(getattr(layer.colormap, "_data_to_texture", None)):
            missing.append("Colormap._data_to_texture")
        if not hasattr(layer.events, "labels_update"):
            missing.append("Labels.events.labels_update")
        if not missing:
            labels_texture(layer, np.zeros((1, 1), dtype=np.uint8))
    except Exception as err:  # any failure means: do not use the fast path
        missing = [f"{type(err).__name__}: {err}"]
    if missing:
        import napari

        log.warning("napari %s lacks %s: finished regions refresh whole layers (slower)", napari.__version__,
                    ", ".join(missing))
        return False
    return True


def main_window(viewer: Any) -> Any:
    """The viewer's ``QMainWindow`` (napari keeps it private as ``window._qt_window``); None when headless/renamed."""
    return getattr(getattr(viewer, "window", None), "_qt_window", None)


def canvas_widget(viewer: Any) -> Any:
    """The Qt widget of the viewer's canvas (private ``window._qt_viewer.canvas.native``); None when renamed."""
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    canvas = getattr(qt_viewer, "canvas", None)
    return getattr(canvas, "native", None)
