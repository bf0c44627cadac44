"""The one class palette: colours for classes that a model or a store brings none for.

The dock's overlays, the exporters (OME-Zarr labels, GeoJSON, napari writers) and fine-tuning (which stores colours in
the checkpoint it saves) all take their defaults from here, so a class keeps its colour from the viewer to QuPath and
into a model trained on it. A leaf module with no imports beyond the standard library: the widget (no torch), the
exporters and ``train/`` can all use it.

Convention: index 0 is the background (black; napari shows label 0 transparent). Segmentation class ``k`` takes
``PALETTE[k]``; detection classes have no background, so detection class ``k`` takes ``PALETTE[k + 1]`` and a
"nucleus" point gets the colour the "nucleus" segmentation class would.
"""

from __future__ import annotations

from collections.abc import Sequence

#: tab10-like; class 0 (background) black. Cycled past its end.
PALETTE: list[list[int]] = [
    [0, 0, 0], [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
]

#: Where detection classes start in the palette (they have no background class).
DETECTION_OFFSET = 1


def default_colors(n: int, first: int = 0) -> list[list[int]]:
    """``n`` RGB colours (0..255) from the palette starting at index ``first``, cycled; fresh lists."""
    return [list(PALETTE[(first + i) % len(PALETTE)]) for i in range(n)]


def fill_colors(colors: Sequence[Sequence[float]] | None, n: int, first: int = 0) -> list[list[int]]:
    """RGB per class for ``n`` classes: the given colours (alpha dropped), then the palette for classes without one."""
    given = [[int(v) for v in list(c)[:3]] for c in (colors or [])][:n]
    return given + [list(PALETTE[(first + i) % len(PALETTE)]) for i in range(len(given), n)]


def rgba(names: Sequence[str], colors: Sequence[Sequence[float]], first: int = 0) -> list[list[float]]:
    """RGBA 0..1 per class (at least one): the given colours (with their alpha if any), else the palette."""
    out = []
    for i in range(max(len(names), len(colors), 1)):
        c = colors[i] if i < len(colors) else PALETTE[(first + i) % len(PALETTE)]
        out.append([v / 255 for v in c[:3]] + [c[3] / 255 if len(c) > 3 else 1.0])
    return out
