"""The napari dock widget ("xT analysis"): Qt/magicgui only, talks to the engine through a small torch-free API."""

from ._dock import XTDock

__all__ = ["XTDock", "make_dock"]


def make_dock(napari_viewer) -> XTDock:
    """npe2 widget command: the "xT analysis" dock for ``napari_viewer``."""
    return XTDock(napari_viewer)
