"""The model's view of the one tiling rule, which lives in :mod:`napari_xt.tiling` (torch-free, shared with the
streaming plan)."""

from ..tiling import Span, owned_spans, tile_starts

__all__ = ["Span", "owned_spans", "tile_starts"]
