"""Training on a busy CPU uses the idle cores only, and a pretrained backbone keeps its batch-norm statistics."""

from __future__ import annotations

import os

import torch

from napari_xt.train import runtime
from napari_xt.train.runtime import freeze_batchnorm, idle_core_threads


def test_batch_norms_keep_their_statistics_while_the_rest_trains():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Dropout(0.5))
    net.train()
    freeze_batchnorm(net)
    before = net[1].running_mean.clone()
    net(torch.randn(2, 3, 8, 8) * 5 + 3)
    assert torch.equal(net[1].running_mean, before)  # statistics untouched
    assert net[2].training and not net[1].training  # only the norms changed mode
    assert net[1].weight.requires_grad  # their affine weights still train


def test_threads_follow_the_idle_cores_and_come_back(monkeypatch):
    """The load is the one thing faked here: a machine's load average cannot be set by a test."""
    torch.set_num_threads(2)
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (3.7, 3.0, 2.0))
    with idle_core_threads(True):
        assert torch.get_num_threads() == 1  # both cores busy: one thread, never zero
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    with idle_core_threads(True):
        assert torch.get_num_threads() == 2  # an idle machine: as many as before, never more
    with idle_core_threads(False):  # a GPU run leaves the CPU pool alone
        assert torch.get_num_threads() == 2
    assert hasattr(os, "getloadavg")
