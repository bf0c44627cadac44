"""The engine's allocator policy on glibc: while a CPU run works, the large buffers a model frees stay in the process
and the next forward reuses them (no page faults to zero them again per batch); afterwards glibc's defaults are
back and nothing is held."""

from __future__ import annotations

import platform
import resource
import sys

import pytest
import torch

from napari_xt.engine import allocator
from napari_xt.engine.allocator import reuse_freed_memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="the policy exists on glibc only (CI runs on glibc)")


def _faults_per_forward(times: int = 8) -> tuple[list[int], int]:
    """Minor page faults of each of ``times`` forwards of a small conv net whose activations (72 MB: above glibc's
    largest mmap threshold) are allocated and freed by every forward, as a region encoder's are; and the pages of
    one such activation."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.GELU(), torch.nn.Conv2d(32, 8, 1))
    x = torch.randn(2, 3, 384, 384)
    faults = []
    with torch.inference_mode():
        for _ in range(times):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            net(x)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults, 2 * 32 * 384 * 384 * 4 // 4096


@glibc
def test_a_forward_reuses_the_memory_the_last_one_freed_and_nothing_is_held_after():
    outside, pages = _faults_per_forward()
    assert min(outside[2:]) >= pages  # glibc's default: each activation is a fresh mmap, faulted page by page
    with reuse_freed_memory() as on:
        assert on and allocator.active()
        inside, _ = _faults_per_forward()
    # once the first forwards shaped the heap: the same memory, (almost) no faults; outside, four forwards fault
    # 16 activations' worth
    assert sum(inside[4:]) < pages
    assert not allocator.active()
    after, _ = _faults_per_forward()
    assert sum(after[4:]) >= 2 * pages  # defaults back: the heap was trimmed, activations are mmapped again


@glibc
def test_after_a_run_mid_sized_buffers_still_come_from_the_heap():
    """Any mallopt call ends glibc's rising mmap threshold; left at its 128 kB start, every decoded region and
    chunk buffer (a few MB) would be a fresh, faulting mmap for the rest of the process."""
    with reuse_freed_memory():
        pass
    block = 4 * 2**20  # 4 MB: a decoded 1024 px RGB region, a float32 batch slice
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(16):
        buf = torch.ones(block // 4)
        del buf
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 4 * block // 4096  # from the heap: at most the first few allocations fault (16 x 1024 if mapped)


def test_nested_runs_share_the_policy_and_disabled_is_a_no_op():
    with reuse_freed_memory(enabled=False) as on:
        assert on is False and not allocator.active()
    with reuse_freed_memory() as outer:
        with reuse_freed_memory() as inner:
            assert outer == inner
        assert allocator.active() == outer  # the inner run ending leaves the outer's policy on
    assert not allocator.active()
