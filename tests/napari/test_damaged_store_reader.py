"""A damaged result store opened in napari: one clear line naming the store and the fix, never a traceback; what is
lost is shown as background, and said so."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from damagedstore import DAMAGES, LAYOUT, ROOT, damaged_copy, planned_store
from napari_xt import _reader
from napari_xt._reader import napari_get_reader


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return planned_store(tmp_path_factory.mktemp("good") / "good.xt.zarr").path


@pytest.fixture
def notes(monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(_reader, "_notify", said.append)
    return said


def _no_traceback(caplog):
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("name", [*LAYOUT, *ROOT])
def test_a_store_with_a_damaged_layout_is_one_line_and_no_reader(good, tmp_path, notes, caplog, name):
    store = damaged_copy(good, tmp_path, name)
    with caplog.at_level(logging.DEBUG, logger="napari_xt"):
        assert napari_get_reader(str(store)) is None
    _no_traceback(caplog)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert str(store) in notes[0] and DAMAGES[name][1] in notes[0]
    assert ("made again" if name in ROOT else "repairs it") in notes[0]


def test_missing_chunks_open_with_a_warning_naming_the_regions(good, tmp_path, notes, caplog):
    store = damaged_copy(good, tmp_path, "chunks_deleted")
    with caplog.at_level(logging.DEBUG, logger="napari_xt"):
        layers = napari_get_reader(str(store))(str(store))
    _no_traceback(caplog)
    assert [kind for _, _, kind in layers] == ["labels", "points"]
    assert any("chunk files of done regions are missing" in n and "9 regions" in n for n in notes)
    assert not any("not complete" in n for n in notes)  # damage, not an unfinished run


def test_garbage_chunks_show_as_background_and_are_said_once(good, tmp_path, notes, caplog):
    store = damaged_copy(good, tmp_path, "chunks_garbage")
    layers = napari_get_reader(str(store))(str(store))
    levels = layers[0][0]
    notes.clear()
    with caplog.at_level(logging.DEBUG, logger="napari_xt"):
        block = np.asarray(levels[0][0:200, 0:300])
        np.asarray(levels[1][:, :])
    _no_traceback(caplog)
    assert block.shape == (200, 300) and not block.any()
    assert len(notes) == 2 and all("cannot be decoded" in n and "deep check" in n for n in notes)  # once per level
    np.asarray(levels[0][0:10, 0:10])
    assert len(notes) == 2


def test_the_viewer_opens_a_store_with_garbage_chunks(make_napari_viewer, good, tmp_path, notes):
    store = damaged_copy(good, tmp_path, "chunks_garbage")
    viewer = make_napari_viewer()
    layers = viewer.open(str(store), plugin="napari-xt")
    labels = next(layer for layer in layers if type(layer).__name__ == "Labels")
    viewer.reset_view()
    assert labels.multiscale and any("cannot be decoded" in n for n in notes)
