"""Errors worded for a terminal: the library's typed errors plus the flag that fixes them."""

from __future__ import annotations

from ..engine.pipeline import StoreWriteError
from ..errors import (
    ChannelMismatch,
    DeviceUnavailable,
    EncoderIsNotAModel,
    NotAStore,
    OutputError,
    PlanError,
    StoreDamaged,
    StoreExists,
    StoreMismatch,
    UnknownModel,
)

_PLAN_FLAGS = {"level": "--level", "mpp": "--mpp", "roi": "--roi", "overlap": "--overlap", "context": "--context",
               "order": "--order"}


def describe(err: BaseException, out_flag: str = "--out") -> str:
    """One line for stderr or a batch manifest; the facts come from the error's fields."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, StoreDamaged):
        flags = {"resume": "--resume", "verify": "--resume --verify", "remake": "--overwrite"}.get(err.fix, "--resume")
        how = f"`napari-xt predict IMAGE --model MODEL --out {err.path} {flags}`"
        if err.fix == "remake":
            return f"{text} ({how} replaces it)"
        return f"{text} ({how}, with the options of its first run; `napari-xt verify {err.path}` lists the damage)"
    if isinstance(err, NotAStore):
        return f"{text}; choose another {out_flag}"
    if isinstance(err, StoreExists) and not err.is_store:
        return f"{text}; it is never replaced: choose another {out_flag}"
    if isinstance(err, StoreExists):
        return f"{text}; use --resume to continue it, --overwrite to replace it, or choose another {out_flag}"
    if isinstance(err, StoreMismatch):
        return f"{text}; use a new {out_flag}, drop --resume, or pass --overwrite to replace it"
    if isinstance(err, PlanError) and err.option == "mpp":
        return f"{text}; give --level instead of --mpp"
    if isinstance(err, PlanError) and err.option in _PLAN_FLAGS:
        return f"{_PLAN_FLAGS[err.option]}: {text}"
    if isinstance(err, DeviceUnavailable):
        return f"{text} (see --device / --precision)"
    if isinstance(err, ChannelMismatch | EncoderIsNotAModel | UnknownModel):
        return text + ("" if isinstance(err, EncoderIsNotAModel) else "; `napari-xt models` lists the models")
    if isinstance(err, StoreWriteError):  # disk full, permissions: the regions written so far are kept
        return f"{text} The same command with --resume continues."
    if isinstance(err, OutputError) and err.exists:
        return f"{text}; pass --overwrite to replace it"
    if "out of memory" in text.lower():
        return f"{text}: lower --batch-size or --region-size, then --resume"
    if type(err).__name__ in ("KeyError", "KilledWorker", "CancelledError", "TimeoutError"):
        return f"{type(err).__name__}: {text}"
    return text
