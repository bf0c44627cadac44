"""Class colours for the dock's layers: the checkpoint's when it has them, else the project palette.

The palette itself lives in :mod:`napari_xt.palette` (shared with the exporters and fine-tuning), so a class keeps
its colour across runs, exports and models trained from the dock.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..palette import rgba


def class_colors(names: Sequence[str], colors: Sequence[Sequence[float]]) -> list[list[float]]:
    """RGBA 0..1 per class: the checkpoint's colours, else the palette (cycled; class 0 is the background)."""
    return rgba(names, colors)
