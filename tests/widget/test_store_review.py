"""A result store opened in napari comes back as its image plus its overlays, and the dock adopts it (Export, Resume):
also after the store moved with its image, and (overlays alone, with a warning) when the image is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dockhelpers import CLS_CLASSES, make_dock

from legacystore import make_format_1
from napari_xt.app import driver
from napari_xt.app.request import make_request
from napari_xt.store import ResultStore


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


# -- classification stores: the heat map comes back -------------------------------------------------------------------
@pytest.fixture
def cls_store(tmp_path, tissue_ome_tiff, cls_checkpoint):
    """A finished classification run (level 1: 3 x 4 regions of 256 px, 2 x 2 region windows) and its live layout."""
    out = tmp_path / "cls.xt.zarr"
    request = make_request(tissue_ome_tiff, str(cls_checkpoint), out, device="cpu", level=1, use_mask=False,
                           region_size=256, window_size=2)
    prepared = driver.prepare(request)
    driver.predict(request, prepared=prepared)
    return tissue_ome_tiff, out, prepared.layout


def _value_at(layer, image_layer, box) -> float:
    """A layer's value at the centre of a level-0 box, through napari's own world transforms."""
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    world = centre * np.asarray(image_layer.scale)[-2:] + np.asarray(image_layer.translate)[-2:]
    i, j = np.round(layer.world_to_data(world)).astype(int)
    return float(layer.data[i, j])


def test_classification_store_brings_its_heat_map_back(make_napari_viewer, qtbot, cls_store):
    from napari_xt.app.heatmap import store_layout
    from napari_xt.widget._overlays import Overlays

    image, out, live = cls_store
    store = ResultStore.open(out)
    scores, names = store.image_scores()
    assert store.complete and len(store.window_scores()) == len(live.boxes) == 4 and names == CLS_CLASSES
    rebuilt = store_layout(store)  # the plan rebuilt from the store's metadata lays the windows out as the run did
    np.testing.assert_array_equal(rebuilt.window_map, live.window_map)
    assert (rebuilt.cell, rebuilt.downsample, rebuilt.boxes) == (live.cell, live.downsample, live.boxes)

    viewer = make_napari_viewer()
    viewer.open(str(out), plugin="napari-xt")
    layers = {layer.name: layer for layer in viewer.layers}
    heat = layers[f"xT window scores [{out.name}]"]
    assert set(layers) == {image.name, heat.name} and type(heat).__name__ == "Image"
    assert heat.metadata["napari_xt"] == {"store": str(out), "heat_map": True}
    assert heat.colormap.name == "inferno" and heat.opacity == pytest.approx(0.5)
    image_layer = layers[image.name]
    half = np.asarray(heat.scale) / 2, np.asarray(image_layer.scale) / 2  # outer pixel edges: exactly over the image
    np.testing.assert_allclose(np.asarray(heat.extent.world) + np.stack([-half[0], half[0]]),
                               np.asarray(image_layer.extent.world)[:, -2:] + np.stack([-half[1], half[1]]))
    top = int(np.argmax(scores))  # the top class of the image scores, as the dock shows a complete run
    stored = store.window_scores()
    assert len({round(float(s[top]), 6) for s in stored.values()}) > 1  # windows differ: a real map, not a constant
    for w, box in live.boxes.items():
        assert _value_at(heat, image_layer, box) == pytest.approx(float(stored[w][top]), abs=1e-6), w
    assert heat.contrast_limits[0] == pytest.approx(min(float(s[top]) for s in stored.values()), abs=1e-3)

    # the dock's heat map (Resume of this store) takes this layer over instead of adding a second one
    overlays = Overlays(viewer)
    overlays.scores.attach(live, image_layer, out)
    assert overlays.scores.layer is heat and len(viewer.layers) == 2


def test_format_1_store_opens_in_napari(make_napari_viewer, qtbot, made_store):
    image, out = made_store
    make_format_1(out)
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.open(str(out), plugin="napari-xt")
    layers = _layers_by_type(viewer)
    assert set(layers) == {"image", "labels"} and layers["image"].metadata["napari_xt"]["path"] == str(image)
    level0 = layers["labels"].data[0] if layers["labels"].multiscale else layers["labels"].data
    np.testing.assert_array_equal(np.asarray(level0), np.asarray(ResultStore.open(out).labels[0]))
    assert Path(dock.out.value) == out
    qtbot.waitUntil(lambda: dock.export_button.enabled, timeout=10_000)
    assert not dock.resume_button.enabled  # complete: its meta.json says so
