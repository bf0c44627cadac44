"""Which device and precision a run uses, and how an out-of-memory error is recognised (no state, no threads)."""

from __future__ import annotations

import torch

from ..errors import DeviceUnavailable

__all__ = ["autocast_dtype", "is_oom", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an unavailable explicit device is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available on this machine", name)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailable(f"device {name!r} requested but MPS is not available on this machine", name)
    return dev


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a precision name on ``device`` (None: plain fp32).

    ``auto`` is bf16 on a CUDA device that supports it (the GPU default to aim for: half the memory traffic, same
    range as fp32) and fp32 everywhere else, so CPU results never change with it.
    """
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type == "cpu":
            raise DeviceUnavailable("fp16 precision needs a GPU; use bf16 or fp32 on the CPU", str(device))
        return torch.float16
    raise DeviceUnavailable(f"precision must be fp32, bf16, fp16 or auto, not {precision!r}")


def is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()
