"""A result store opened in napari comes back as its image plus its overlays, and the dock adopts it (Export, Resume):
also after the store moved with its image, and (overlays alone, with a warning) when the image is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dockhelpers import make_dock

from napari_xt.app import driver
from napari_xt.app.request import make_request
from napari_xt.engine.store import ResultStore


@pytest.fixture
def made_store(tmp_path):
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    (tmp_path / "data").mkdir()
    image = write_ome_tiff(TissueSample(512, 768, seed=1), tmp_path / "data" / "slide.ome.tif")
    out = tmp_path / "data" / "slide.xt.zarr"
    driver.predict(make_request(image, "tiny-hyper-seg", out, device="cpu", level=0, use_mask=False,
                                region_size=256))
    return image, out


def _layers_by_type(viewer):
    return {type(layer).__name__.lower(): layer for layer in viewer.layers}


def test_store_opens_as_image_plus_labels(make_napari_viewer, made_store):
    image, out = made_store
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-xt")
    layers = _layers_by_type(viewer)
    assert set(layers) == {"image", "labels"}
    assert layers["image"].metadata["napari_xt"]["path"] == str(image)
    labels = layers["labels"]
    assert labels.name == f"xT labels [{out.name}]" and labels.metadata["napari_xt"]["store"] == str(out)
    store = ResultStore.open(out)
    level0 = labels.data[0] if labels.multiscale else labels.data
    np.testing.assert_array_equal(np.asarray(level0), np.asarray(store.labels[0]))
    assert np.asarray(level0).any()  # the store holds real results, not an empty map
    # the labels lie over the image: same physical extent
    img_extent = np.asarray(layers["image"].level_shapes[0][:2]) * np.asarray(layers["image"].scale[-2:])
    lab_extent = np.asarray(labels.level_shapes[0]) * np.asarray(labels.scale[-2:])
    np.testing.assert_allclose(lab_extent, img_extent, rtol=0.01)


def test_moved_store_finds_its_image_beside_it(make_napari_viewer, made_store, tmp_path):
    image, out = made_store
    moved = tmp_path / "moved"
    shutil.move(str(image.parent), str(moved))  # the recorded path no longer exists
    viewer = make_napari_viewer()
    viewer.open(str(moved / out.name), plugin="napari-xt")
    layers = _layers_by_type(viewer)
    assert layers["image"].metadata["napari_xt"]["path"] == str(moved / image.name)
    assert "labels" in layers


def test_store_without_its_image_shows_the_overlays_and_says_so(make_napari_viewer, made_store, tmp_path):
    from napari.utils.notifications import notification_manager

    image, out = made_store
    image.unlink()
    seen = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-xt")
    assert set(_layers_by_type(viewer)) == {"labels"}
    assert any(image.name in m and "not at" in m for m in seen), seen


def test_dock_adopts_an_opened_store(make_napari_viewer, qtbot, made_store):


    _image, out = made_store
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.open(str(out), plugin="napari-xt")
    assert Path(dock.out.value) == out
    qtbot.waitUntil(lambda: dock.export_button.enabled, timeout=10_000)
