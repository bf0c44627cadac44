"""A full disk during ``napari-xt predict`` is the user's environment, not a bug: one clear line on stderr (what
happened, that the finished regions are kept, the flag that continues), the traceback only with ``--debug``
(issue 23: the message was right but came after ``ERROR: run failed:`` and a full traceback).

A full disk cannot be made safely on a shared test machine, so this is the one place a fake stands in: the store's
region writer raises ``OSError(ENOSPC)`` from its third region on, in a real ``napari-xt`` process (its own logging
set-up, as a user's terminal gets it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FULL_DISK = """
import errno, sys
from napari_xt.store import ResultStore
real, calls = ResultStore.write_region, []
def full(self, *args, **kwargs):
    calls.append(1)
    if len(calls) > 2:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, *args, **kwargs)
ResultStore.write_region = full
from napari_xt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _predict(image, out, *flags: str) -> subprocess.CompletedProcess:
    args = [*flags, "predict", str(image), "--model", "tiny-hyper-seg", "--out", str(out), "--level", "1",
            "--region-size", "256", "--batch-size", "1", "--no-mask", "--json"]
    return subprocess.run([sys.executable, "-c", FULL_DISK, *args], capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_a_full_disk_is_one_line_and_the_traceback_needs_debug(tissue_ome_tiff, tmp_path, debug):
    res = _predict(tissue_ome_tiff, tmp_path / "r.xt.zarr", *(["--debug"] if debug else []))
    assert res.returncode == 1, res.stderr[-3000:]
    if debug:  # the whole story for a bug report
        assert "Traceback" in res.stderr and "No space left on device" in res.stderr
        return
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    [line] = lines
    assert line.startswith("napari-xt predict: error: could not write region")
    assert "no space left on the device" in line and "finished so far are kept" in line and "--resume" in line
    assert "Traceback" not in res.stderr and "ERROR" not in res.stderr
