"""Errors worded for the dock: the library's typed errors plus the button or field that fixes them."""

from __future__ import annotations

from ..errors import (
    ChannelMismatch,
    DeviceUnavailable,
    ImageError,
    NotAStore,
    PlanError,
    StoreExists,
    StoreMismatch,
    UnknownModel,
    XTError,
)

_PLAN_FIELDS = {"level": "Level", "mpp": "Pixel size", "roi": "Region of interest", "overlap": "Overlap",
                "context": "Context", "order": "Order"}


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return (text[0].upper() + text[1:]) if text else text


def describe(err: BaseException) -> str:
    """A sentence for a notification; unknown errors keep their type so bug reports stay useful."""
    text = str(err).strip() or type(err).__name__
    if "out of memory" in text.lower():
        return ("Out of memory while running the model. Lower the batch size or the region size, or pick a smaller "
                "model; the finished regions are kept and Resume continues from there.")
    if isinstance(err, NotAStore):
        return _sentence(f"{text}. Name another Results store.")
    if isinstance(err, StoreExists) and not err.is_store:
        return _sentence(f"{text}; it is never replaced. Name another Results store.")
    if isinstance(err, StoreExists):
        return _sentence(f"{text}. Press Resume to continue it, name another Results store, or press Run for a new "
                         "one.")
    if isinstance(err, StoreMismatch):
        return _sentence(f"{text}. Name another Results store, or press Run for a new one.")
    if isinstance(err, PlanError) and err.option == "mpp":
        return _sentence(f"{text}. Pick a pyramid level under Resolution.")
    if isinstance(err, PlanError) and err.option in _PLAN_FIELDS:
        return _sentence(f"{_PLAN_FIELDS[err.option]}: {text}.")
    if isinstance(err, ChannelMismatch):
        return _sentence(f"{text}.")
    if isinstance(err, ImageError):
        return _sentence(f"The image cannot be read: {text}")
    if isinstance(err, UnknownModel | DeviceUnavailable | XTError | FileNotFoundError | PermissionError):
        return _sentence(text)
    return f"napari-xt failed: {type(err).__name__}: {text}"
