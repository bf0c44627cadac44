"""The dock's side of a run: build it from a napari layer off the main thread; stream it with a core left free.

Plain Python (no Qt, no torch at import): the widget runs these in thread workers and gets typed events back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from . import driver, threads
from .events import RunEvent
from .layers import layer_to_large_image
from .request import PredictRequest

if TYPE_CHECKING:
    from ..model import XTModel


def prepare(request: PredictRequest, layer: Any = None, model: XTModel | None = None) -> driver.PreparedRun:
    """Open the image (from ``layer`` when given: all bands of the file it came from), load the model unless given,
    make the store; raises the typed errors of :mod:`napari_xt.errors` for user mistakes.

    Like the run itself, this leaves the viewer a core and a higher priority: building a model's tensors or
    planning a 100,000 px slide is seconds of CPU that the main thread would otherwise wait behind."""
    from ..engine.priority import call_at_lower_priority

    def work() -> driver.PreparedRun:
        image = layer_to_large_image(layer) if layer is not None else None
        return driver.prepare(request, model=model, image=image)

    with threads.spare_a_core():
        return call_at_lower_priority(work)


def stream(prepared: driver.PreparedRun) -> Iterator[RunEvent]:
    """The run's events for a viewer: torch leaves one core to the main thread; never raises."""
    return driver.events(prepared, spare_a_core=True)
