"""Every per-image error names the image: in a batch of hundreds, "the image has 1 channel" must say which one."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_xt.app import _batch_task, driver
from napari_xt.app.request import make_request
from napari_xt.cli import main
from napari_xt.errors import ChannelMismatch, PlanError


@pytest.fixture(scope="module")
def grey_tiff(tmp_path_factory):
    path = tmp_path_factory.mktemp("grey") / "grey_scan_17.tif"
    tifffile.imwrite(path, np.full((300, 300), 120, np.uint8), tile=(256, 256), photometric="minisblack")
    return path


def test_channel_mismatch_names_the_image(grey_tiff, tmp_path):
    with pytest.raises(ChannelMismatch) as info:
        driver.prepare(make_request(grey_tiff, "tiny-hyper-seg", tmp_path / "a.xt.zarr", device="cpu"))
    assert info.value.image == str(grey_tiff) and "grey_scan_17.tif" in str(info.value)
    assert (info.value.expected, info.value.found) == (3, 1)
    assert not (tmp_path / "a.xt.zarr").exists()  # refused before any store exists


def test_plan_error_names_the_image(tissue_ome_tiff, tmp_path, capsys):
    request = make_request(tissue_ome_tiff, "tiny-hyper-seg", tmp_path / "b.xt.zarr", device="cpu", level=99)
    with pytest.raises(PlanError) as info:
        driver.prepare(request)
    assert info.value.option == "level" and tissue_ome_tiff.name in str(info.value)
    code = main(["predict", str(tissue_ome_tiff), "--model", "tiny-hyper-seg", "--out", str(tmp_path / "c.xt.zarr"),
                 "--level", "99", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "--level" in err and tissue_ome_tiff.name in err and "Traceback" not in err


def test_batch_manifest_error_names_the_image(grey_tiff, tmp_path):
    template = make_request("", "tiny-hyper-seg", "", device="cpu")
    record = _batch_task.process_image(str(grey_tiff), str(tmp_path / "g.xt.zarr"), template)
    assert record["status"] == "failed" and "grey_scan_17.tif" in record["error"]
