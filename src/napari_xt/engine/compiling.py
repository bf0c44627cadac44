"""Optional ``torch.compile`` of the region encoder (``RunOptions.compile``, ``napari-xt predict --compile``).

Why only the region encoder: it is most of the compute on a GPU and its input shape is fixed per batch size; the
context encoders carry a memory whose valid length changes every step (a recompile each time). Why a warm-up: the
first call compiles (tens of seconds on a CPU, ~a minute for a big backbone), so the run compiles on dummy regions of
the shapes it will use *before* it reads anything; the first overlay then costs one region's work, as without
compiling, and the compile time is reported on its own (``stage_seconds["compile"]``).

Guarded: where torch.compile cannot work (no C++ compiler for the CPU backend, no Triton for CUDA, or compiling
fails), the run goes on uncompiled and says so once; results never depend on it.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..model import XTModel

log = logging.getLogger(__name__)

__all__ = ["compile_problem", "compile_region_encoder"]


def compile_problem(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot work on ``device`` here (one sentence), or None when it can."""
    if not hasattr(torch, "compile"):
        return "this torch has no torch.compile"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return "torch.compile needs a C++ compiler (c++, g++ or clang++) on the PATH for the CPU, and none was found"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except Exception:
            return "torch.compile needs Triton for CUDA, and it is not installed"
    return None


def compile_region_encoder(model: XTModel, device: torch.device, batch_sizes: list[int],
                           amp: torch.dtype | None) -> tuple[float, str | None]:
    """Compile ``model.region_encoder``'s forward (dynamic batch) and warm it up on ``batch_sizes`` dummy regions.

    Returns (seconds spent, None) or (seconds, the reason it runs uncompiled). The module itself is untouched (its
    ``forward`` is wrapped), so checkpoints, checksums and state dicts do not change.
    """
    t0 = time.perf_counter()
    problem = compile_problem(device)
    if problem is not None:
        return time.perf_counter() - t0, problem
    encoder = model.region_encoder
    if getattr(encoder, "_napari_xt_compiled", False):  # a model reused by a later run (the dock keeps it)
        return time.perf_counter() - t0, None
    eager = encoder.forward
    encoder.forward = torch.compile(eager, dynamic=True)  # type: ignore[method-assign]
    c, r = model.config.in_chans, model.config.region_size
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for n in sorted(set(batch_sizes)):
                model.encode_regions(torch.zeros(n, c, r, r, device=device))
    except Exception as err:  # a backend failure must never cost the run: go on eagerly
        encoder.forward = eager  # type: ignore[method-assign]
        return time.perf_counter() - t0, f"torch.compile failed ({type(err).__name__}: {str(err)[:200]})"
    encoder.__dict__["_napari_xt_compiled"] = True  # a plain flag (nn.Module attributes are for tensors)
    return time.perf_counter() - t0, None
