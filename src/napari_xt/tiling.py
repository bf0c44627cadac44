"""The one tiling rule: where tiles start along an axis and which pixels each one owns. Plain integers, no torch.

A top-level module (not in the model package, whose import loads torch), so a store opened in napari rebuilds its
plan without importing torch on the main thread.

Whole-image ``XTModel.forward`` (regions over an image, sub-regions over a region, through
:class:`napari_xt.model.tokenize.RegionGrid`) and the streaming plan (:func:`napari_xt.engine.plan.make_plan`) both
tile with these two functions, so a region sees the same pixels and owns the same pixels whichever path runs it, and
training (whole-image forward on chips) sees the tiling that inference (the streaming plan) uses.

The rule along one axis of ``length`` px, for tiles of ``size`` px at ``stride`` (= size - overlap):

* tiles start at 0, stride, 2 * stride, ... while they end before the axis does; the last tile is moved back to end
  flush with the axis (``length - size``), so it reads real pixels rather than padding, and overlaps its neighbour
  by more than ``overlap``. Only an axis shorter than one tile is padded (one tile at 0).
* ``align`` snaps the flush tile's start *up* to a multiple of ``align`` (it may then reach up to ``align - 1`` px
  past the end, which is padded). The model needs this: its outputs at a feature stride ``f`` can only be pasted
  onto the image's stride-``f`` grid when tile starts are multiples of ``f``. The streaming plan uses ``align=1``.
* where two tiles overlap, the pixels are split at the middle of their overlap (snapped *down* to ``align``); each
  tile owns its side. Owned spans are disjoint and cover ``[0, length)`` exactly, so results do not depend on which
  tile finished first.
"""

from __future__ import annotations

Span = tuple[int, int]  # [start, end) px along one axis


def tile_starts(length: int, size: int, stride: int, align: int = 1) -> list[int]:
    """Start px of the tiles covering ``[0, length)``: regular steps of ``stride``, the last one flush with the end.

    The number of tiles is ``1 + ceil((length - size) / stride)`` (1 when ``length <= size``), the same count a
    regular padded grid would have; only the last tile's start differs.
    """
    if size <= 0 or not 0 < stride <= size:
        raise ValueError(f"need 0 < stride ({stride}) <= size ({size})")
    if align <= 0 or stride % align:
        raise ValueError(f"stride {stride} must be a positive multiple of align {align}")
    if length <= size:
        return [0]
    last = -(-(length - size) // align) * align
    return list(range(0, length - size, stride)) + [last]


def owned_spans(starts: list[int], size: int, length: int, align: int = 1) -> list[Span]:
    """Split ``[0, length)`` among tiles at ``starts``: neighbours meet at the middle of their overlap.

    With a regular overlap ``o`` the earlier tile owns ``o // 2`` px of it; the flush last tile's larger overlap is
    split the same way. Cuts are snapped down to ``align`` (never before the later tile's start, itself aligned).
    """
    cuts = [0]
    for prev, nxt in zip(starts, starts[1:]):
        mid = (prev + size + nxt) // 2
        cuts.append(max(nxt, mid // align * align))
    cuts.append(length)
    return [(min(cuts[i], length), min(cuts[i + 1], length)) for i in range(len(starts))]
