"""What a training step needs from the machine and the backbone, apart from the loop: how many CPU threads, batch
norms that keep a pretrained backbone's statistics, memory cut between chunks, and a digest of the weights."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["detach", "freeze_batchnorm", "idle_core_threads", "weights_digest"]


@contextmanager
def idle_core_threads(on_cpu: bool) -> Iterator[None]:
    """On the CPU, torch's intra-op threads are as many as the cores other processes leave idle (1-minute load
    average), never more than it had, at least one. Why: OpenMP threads spin-wait for a core another process holds;
    on a loaded 2-core machine an EfficientNet-Lite0 training window took 9 s with 2 threads and 0.8 s with 1."""
    if not on_cpu or not hasattr(os, "getloadavg"):
        yield
        return
    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = max(1, min(before, cores - int(os.getloadavg()[0] + 0.5)))
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def freeze_batchnorm(module: torch.nn.Module) -> None:
    """Batch norms of a pretrained backbone normalise with their pretrained statistics (their affine weights still
    train). Why: a training step sees one region at a time, and per-region statistics of a 256 px sea chip are not
    the running averages inference uses, so what training taught did not hold at inference (EfficientNet-Lite0 on
    the ship chips: ship never predicted on validation after 12 windows)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def weights_digest(model: torch.nn.Module) -> str:
    """A cheap identity of a model's weights (a strided sample of every tensor), config left out: the start event
    carries it, so "Train again continues from the last model" is checkable, not just claimed."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        flat = tensor.detach().float().flatten()
        h.update(flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def detach(memory: Any) -> Any:
    """The context memory cut from the autograd graph (truncated back-propagation between chunks), any nesting."""
    if isinstance(memory, torch.Tensor):
        return memory.detach()
    if isinstance(memory, dict):
        return {k: detach(v) for k, v in memory.items()}
    if isinstance(memory, (list, tuple)):
        return type(memory)(detach(v) for v in memory)
    return memory
