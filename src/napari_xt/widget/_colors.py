"""Class colours: the checkpoint's when it has them, else a fixed palette (so a class keeps its colour across runs)."""

from __future__ import annotations

#: used when a checkpoint brings no colours (tab10-like, class 0 is background and stays transparent)
DEFAULT_PALETTE = [
    [0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
]


def class_colors(names: list[str], colors: list[list[int]]) -> list[list[float]]:
    """RGBA 0..1 per class: the checkpoint's colours, else the default palette (cycled)."""
    out = []
    for i in range(max(len(names), len(colors), 1)):
        c = colors[i] if i < len(colors) else DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)]
        rgba = [v / 255 for v in c[:3]] + [c[3] / 255 if len(c) > 3 else 1.0]
        out.append(rgba)
    return out
