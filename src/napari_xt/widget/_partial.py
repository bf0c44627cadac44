"""Show finished regions in a Labels layer by updating only their part of the displayed tile and texture.

``layer.refresh()`` re-reads the whole visible tile from the store, re-maps it through the colormap and uploads it
to the GPU: on a 2-core machine under Xvfb that kept the event loop busy ~40-60 ms per refresh, and as regions
stream in it starved the worker too (regions/s doubled without it). A finished region only changes its own box, so
this copies that box from the store into napari's current slice and uploads just that part, the route napari's own
paint brush takes (``Labels.data_setitem`` → ``events.labels_update``). It leans on napari internals, reached only
through :mod:`napari_xt._compat` (probed once, asserted by a test on the pinned napari), so anything unexpected
answers False and the caller falls back to ``refresh()``.

The regions of one refresh are read from the store in one call when they lie close together (their bounding box is
at most ``MERGE_AREA`` times their own area, or small): zarr's sync API costs a few ms per call whatever the size
(10 ms per region under load, measured in ``benchmarks/bench_widget.py``), and regions finish in neighbouring
batches. Copying the whole box is right: the store is the truth for the pixels between them too.

A refresh has three steps so that the store read can leave the main thread (issue 15: 37 reads of 10-20 ms each on
the main thread in one benchmark run): :func:`plan_regions` (main thread: which boxes of which tile),
:func:`read_boxes` (any thread: zarr reads of a store that is only appended to are thread-safe) and
:func:`apply_boxes` (main thread: into the tile and the texture, only if napari still shows the tile that was
planned). :class:`BoxReader` runs the middle step in a short-lived thread, one read at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from superqt.utils import ensure_main_thread

from .._compat import labels_slice, labels_texture, partial_labels_refresh_supported

log = logging.getLogger(__name__)

MERGE_AREA = 4  # read the bounding box of a refresh's regions at once when it is at most this many times their area
SMALL_BOX = 256 * 256  # ... or at most this many pixels
READ_THREAD = "napari-xt labels read"  # the name of BoxReader's threads


@dataclass
class Plan:
    """Where a refresh's regions lie in the tile napari displays (``slice_response``): ``boxes`` in tile px, read
    from ``data`` (the shown pyramid level) at ``origin`` (the tile's corner in that level's px)."""

    layer: Any
    slice_response: Any
    level: int
    origin: tuple[int, int]
    data: Any
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def _tile(layer):
    """(slice response, level, tile origin (y, x) in that level's px, level array), or None when not applicable."""
    found = labels_slice(layer)
    if found is None:
        return None
    sl, si = found
    if not layer.loaded or layer.contour > 0 or si.ndisplay != 2 or layer.ndim != 2:
        return None
    if tuple(si.order) != (0, 1) or sl.empty:
        return None
    raw, view = sl.image.raw, sl.image.view
    if raw.ndim != 2 or raw.shape != view.shape[:2]:
        return None
    if layer.multiscale:
        level = int(layer.data_level)
        origin = np.asarray(layer.corner_pixels[0], dtype=int)[-2:]
        data = layer.data[level]
    else:
        level, origin, data = 0, np.zeros(2, dtype=int), layer.data
    return sl, level, (int(origin[0]), int(origin[1])), data


def plan_regions(layer, cores) -> Plan | None:
    """Main thread: the boxes of the displayed tile of ``layer`` where the regions ``cores`` (level-0 px of the
    store) lie; None when the layer is not in a state this understands (the caller refreshes it whole).

    The layer's data must be a result-store pyramid: level ``L`` samples every ``2**L``-th pixel, so a region owns
    the level pixels ``[ceil(y0 / 2**L), ceil(y1 / 2**L))``.
    """
    if not partial_labels_refresh_supported():
        return None
    try:
        found = _tile(layer)
        if found is None:
            return None
        sl, level, origin, data = found
        step = 2**level
        th, tw = sl.image.raw.shape
        boxes = []
        for y0, x0, y1, x1 in cores:
            ly0, lx0 = -(-y0 // step) - origin[0], -(-x0 // step) - origin[1]  # ceil: the pixels this region owns
            ly1, lx1 = -(-y1 // step) - origin[0], -(-x1 // step) - origin[1]
            ty0, tx0, ty1, tx1 = max(ly0, 0), max(lx0, 0), min(ly1, th), min(lx1, tw)
            if ty1 > ty0 and tx1 > tx0:  # else outside the view
                boxes.append((ty0, tx0, ty1, tx1))
        return Plan(layer, sl, level, origin, data, _merged(boxes))
    except Exception:  # napari internals changed: the caller refreshes the whole layer instead
        log.debug("planning a partial labels update failed; refreshing the layer", exc_info=True)
        return None


def read_boxes(plan: Plan) -> list[np.ndarray]:
    """Any thread: the store's pixels of each of ``plan``'s boxes (the only step here that reads the store)."""
    oy, ox = plan.origin
    return [np.asarray(plan.data[ty0 + oy:ty1 + oy, tx0 + ox:tx1 + ox]) for ty0, tx0, ty1, tx1 in plan.boxes]


def tile_changed(plan: Plan) -> bool:
    """Whether napari sliced ``plan.layer`` anew since ``plan`` was made (pan, zoom, refresh): its boxes are stale."""
    found = labels_slice(plan.layer)
    return found is None or found[0] is not plan.slice_response


def apply_boxes(plan: Plan, blocks: list[np.ndarray]) -> bool:
    """Main thread: put ``blocks`` (``read_boxes(plan)``) into the displayed tile and upload them. False, having
    changed nothing visible, when the tile is no longer the one planned or napari's internals are not as expected."""
    try:
        if tile_changed(plan):
            return False
        layer, sl = plan.layer, plan.slice_response
        raw, view = sl.image.raw, sl.image.view
        for (ty0, tx0, _, _), block in zip(plan.boxes, blocks, strict=True):
            h, w = block.shape
            raw[ty0:ty0 + h, tx0:tx0 + w] = block
            texture = labels_texture(layer, block)
            view[ty0:ty0 + h, tx0:tx0 + w] = texture
            layer.events.labels_update(data=texture, offset=(ty0, tx0))
        return True
    except Exception:  # napari internals changed: the caller refreshes the whole layer instead
        log.debug("partial labels update failed; refreshing the layer", exc_info=True)
        return False


class BoxReader:
    """Reads a plan's boxes in a background thread, one read at a time, and calls ``done(plan, blocks, error)`` on
    the main thread (``blocks`` None when the read failed).

    Each read gets its own short-lived thread: nothing lingers between reads or after a run, and ``wait`` joins the
    one in flight (a read takes tens of ms). ``cancel`` makes the read in flight answer nobody: a full refresh, a new
    store or a removed layer supersedes it.
    """

    def __init__(self, done: Callable[[Plan, list[np.ndarray] | None, BaseException | None], None]):
        self._done = done
        self._thread: threading.Thread | None = None
        self._ticket: object | None = None  # the read in flight that may still answer
        self._deliver = ensure_main_thread(self._arrived)

    @property
    def busy(self) -> bool:
        """A read was started and has not answered (nor been cancelled) yet."""
        return self._ticket is not None

    def start(self, plan: Plan) -> None:
        if self.busy:
            raise RuntimeError("a read is in flight")
        ticket = self._ticket = object()
        self._thread = threading.Thread(target=self._read, args=(ticket, plan), name=READ_THREAD, daemon=True)
        self._thread.start()

    def _read(self, ticket: object, plan: Plan) -> None:
        blocks, error = None, None
        try:
            blocks = read_boxes(plan)
        except Exception as err:
            error = err
        try:
            self._deliver(ticket, plan, blocks, error)
        except Exception:  # no Qt application any more (shutting down): nobody to show it to
            log.debug("could not hand a labels read to the main thread", exc_info=True)

    def _arrived(self, ticket: object, plan: Plan, blocks: list[np.ndarray] | None,
                 error: BaseException | None) -> None:
        if ticket is not self._ticket:  # cancelled meanwhile
            return
        self._ticket = None
        self._done(plan, blocks, error)

    def cancel(self) -> None:
        """Forget the read in flight (its answer is dropped)."""
        self._ticket = None

    def wait(self, timeout: float = 5.0) -> None:
        """Join the thread of the last read (its answer, if not cancelled, still comes through the event loop)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _merged(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """``boxes`` as one bounding box when that reads little more than they do (see ``MERGE_AREA``), else as given."""
    if len(boxes) < 2:
        return boxes
    y0, x0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    y1, x1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    union = (y1 - y0) * (x1 - x0)
    if union <= SMALL_BOX or union <= MERGE_AREA * sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes):
        return [(y0, x0, y1, x1)]
    return boxes
