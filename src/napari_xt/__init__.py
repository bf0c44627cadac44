"""napari-xt: run xT (nested tokenization) models over images larger than any GPU, inside napari."""

__version__ = "0.1.0"
