"""Preview stores left behind by a napari that closed or crashed mid-preview are deleted before the next preview;
stores a live process shows, and anything that is not a result store, are never touched (app/previews.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import torch

from napari_xt.app.driver import predict
from napari_xt.app.previews import claim_preview, discard_preview, sweep_stale_previews
from napari_xt.app.request import make_request
from napari_xt.model import XTConfig, build_model, save_model
from napari_xt.store import is_store


def _real_store(tissue_ome_tiff, tmp_path):
    torch.manual_seed(0)
    model = build_model(XTConfig(region_encoder="tiny", region_size=256, sub_region_size=128, context_encoder="none",
                                 heads={"segmentation": {"num_classes": 2}}))
    path = save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "made.xt.zarr"
    predict(make_request(str(tissue_ome_tiff), str(path), str(out), device="cpu", use_mask=False, level=2))
    assert is_store(out)
    return out


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_previews_go_and_live_ones_stay(tissue_ome_tiff, tmp_path):
    made = _real_store(tissue_ome_tiff, tmp_path)
    folder = tmp_path / "previews"
    folder.mkdir()
    stores = {name: folder / f"{name}.xt.zarr" for name in ("mine", "dead", "elsewhere", "old", "recent")}
    for path in stores.values():
        shutil.copytree(made, path)
    claim_preview(stores["mine"])
    assert (folder / "mine.xt.zarr.owner").read_text().split() == [socket.gethostname(), str(os.getpid())]
    (folder / "dead.xt.zarr.owner").write_text(f"{socket.gethostname()} {_dead_pid()}\n")
    (folder / "elsewhere.xt.zarr.owner").write_text(f"another-host-{socket.gethostname()} 1\n")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stores["old"], (two_days_ago, two_days_ago))  # no owner file: from before owner files existed
    (folder / "notes").mkdir()  # not a store: never touched, whatever its age
    os.utime(folder / "notes", (two_days_ago, two_days_ago))
    (folder / "gone.xt.zarr.owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")  # its store is gone

    swept = sweep_stale_previews(str(folder))

    assert sorted(p.name for p in swept) == ["dead.xt.zarr", "old.xt.zarr"]
    left = sorted(p.name for p in folder.iterdir())
    assert left == ["elsewhere.xt.zarr", "elsewhere.xt.zarr.owner", "mine.xt.zarr", "mine.xt.zarr.owner", "notes",
                    "recent.xt.zarr"]
    discard_preview(stores["mine"], str(folder))  # the tab's own discard takes the owner file along
    assert not stores["mine"].exists() and not (folder / "mine.xt.zarr.owner").exists()
    discard_preview(made, str(folder))  # outside the previews folder: never deleted
    assert is_store(made)
