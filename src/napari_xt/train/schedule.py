"""What the optimiser steps on and how fast: the trainable parameter groups and the warm-up + cosine schedule.

Apart from the loop so the loop reads as the order of a training run, and so the learning-rate rules (a pretrained
backbone's smaller rate, a schedule that runs over a time budget) are read in one place.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .model_setup import frozen_by_freezing
from .options import TrainOptions

__all__ = ["lr_schedule", "param_groups"]


def param_groups(model: torch.nn.Module, options: TrainOptions) -> list[dict[str, Any]]:
    """The trainable parameters; a pretrained backbone's learn at ``encoder_lr_scale`` x the rate (what the heads
    need from scratch would wash out ImageNet or foundation features in a few hundred steps)."""
    o = options
    scale = o.encoder_lr_scale if (o.pretrained or o.encoder_weights) else 1.0
    backbone: list[torch.nn.Parameter] = []
    rest: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if o.freeze_encoder and frozen_by_freezing(name):
            continue
        (backbone if frozen_by_freezing(name) else rest).append(p)
    groups: list[dict[str, Any]] = [{"params": rest}]
    if backbone:
        groups.append({"params": backbone, "lr": o.lr * scale})
    return groups


def lr_schedule(optimiser: torch.optim.Optimizer, *, steps: int, per_epoch: int, warmup: float,
                budget: float | None, t0: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine down to 5 % of the rate over the run: by steps, or by the time spent since
    ``t0`` when there is a ``budget`` (whichever is further), so a budgeted run ends its schedule as its time ends.
    With a budget the warm-up is at most one epoch (the epochs that fit are not known in advance)."""
    warm = max(1, int(warmup * steps)) if budget is None else max(1, min(int(warmup * steps), per_epoch))

    def progress(s: int) -> float:  # share of the training done: by steps, or by time when there is a budget
        done = s / steps
        return max(done, (time.perf_counter() - t0) / budget) if budget else done

    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: min(1.0, (s + 1) / warm) * (
        0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress(s))))))
