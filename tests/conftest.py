"""Shared fixtures: small synthetic samples written as real OME-TIFF pyramids."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _results_in_tmp(tmp_path_factory, monkeypatch):
    """The dock's default results folder is the user data directory: tests write theirs to a temporary one."""
    monkeypatch.setenv("NAPARI_XT_RESULTS", str(tmp_path_factory.getbasetemp() / "results"))
    # and the dock remembers its choices in a folder of each test's own (never the user's, never another test's)
    monkeypatch.setenv("NAPARI_XT_CONFIG", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="session")
def tissue_ome_tiff(tmp_path_factory) -> Path:
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    path = tmp_path_factory.mktemp("samples") / "tissue.ome.tif"
    return write_ome_tiff(TissueSample(1536, 2048, seed=1), path)


@pytest.fixture(scope="session")
def sar_ome_tiff(tmp_path_factory) -> Path:
    from napari_xt.synthetic import SarSample
    from napari_xt.synthetic.export import write_ome_tiff

    path = tmp_path_factory.mktemp("samples") / "sar.ome.tif"
    return write_ome_tiff(SarSample(1024, 1536, seed=2), path)
