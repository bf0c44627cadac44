"""Fixtures: a finished result store with known geometry, and an unfinished one (see exporthelpers)."""

from __future__ import annotations

import numpy as np
import pytest
from exporthelpers import build_store, make_labels

from napari_xt.store import ResultStore


@pytest.fixture(scope="session")
def labels() -> np.ndarray:
    return make_labels()


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> ResultStore:
    return build_store(tmp_path_factory.mktemp("stores") / "run.xt.zarr")


@pytest.fixture(scope="session")
def partial_store(tmp_path_factory) -> ResultStore:
    return build_store(tmp_path_factory.mktemp("stores") / "partial.xt.zarr", done=(0,), finish=False)
