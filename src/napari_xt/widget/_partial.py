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
"""

from __future__ import annotations

import logging

import numpy as np

from .._compat import labels_slice, labels_texture, partial_labels_refresh_supported

log = logging.getLogger(__name__)

MERGE_AREA = 4  # read the bounding box of a refresh's regions at once when it is at most this many times their area
SMALL_BOX = 256 * 256  # ... or at most this many pixels


def _tile(layer):
    """(level array, tile origin (y, x) in that level's px, raw tile, view tile), or None when not applicable."""
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
    return level, origin, data, raw, view


def show_regions(layer, cores) -> bool:
    """Update ``layer``'s displayed tile where the regions ``cores`` (level-0 px of the store) lie.

    The layer's data must be a result-store pyramid: level ``L`` samples every ``2**L``-th pixel, so a region owns
    the level pixels ``[ceil(y0 / 2**L), ceil(y1 / 2**L))``. Returns False, having changed nothing visible, when the
    layer is not in a state this understands.
    """
    if not partial_labels_refresh_supported():
        return False
    try:
        found = _tile(layer)
        if found is None:
            return False
        level, origin, data, raw, view = found
        step = 2**level
        th, tw = raw.shape
        boxes = []
        for y0, x0, y1, x1 in cores:
            ly0, lx0 = -(-y0 // step) - origin[0], -(-x0 // step) - origin[1]  # ceil: the pixels this region owns
            ly1, lx1 = -(-y1 // step) - origin[0], -(-x1 // step) - origin[1]
            ty0, tx0, ty1, tx1 = max(ly0, 0), max(lx0, 0), min(ly1, th), min(lx1, tw)
            if ty1 > ty0 and tx1 > tx0:  # else outside the view
                boxes.append((ty0, tx0, ty1, tx1))
        updates = []
        for ty0, tx0, ty1, tx1 in _merged(boxes):
            block = np.asarray(data[ty0 + origin[0]:ty1 + origin[0], tx0 + origin[1]:tx1 + origin[1]])
            updates.append((ty0, tx0, block))
        for ty0, tx0, block in updates:
            h, w = block.shape
            raw[ty0:ty0 + h, tx0:tx0 + w] = block
            texture = labels_texture(layer, block)
            view[ty0:ty0 + h, tx0:tx0 + w] = texture
            layer.events.labels_update(data=texture, offset=(ty0, tx0))
        return True
    except Exception:  # napari internals changed: the caller refreshes the whole layer instead
        log.debug("partial labels update failed; refreshing the layer", exc_info=True)
        return False


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
