"""The store's metadata lives in the root group's attributes (format 2): other tools list a store without warnings, a
reader following a writer never reads half a document nor ``complete`` before the data, and format-1 stores (their
``meta.json``) are still read, and moved into the attributes when resumed."""

import threading
import warnings

import numpy as np
import pytest
import zarr
from test_store import IDENTITY, META, dets, spec

from legacystore import make_format_1
from napari_xt.errors import StoreDamaged
from napari_xt.store import ResultStore, is_store, read_meta


def _full_store(path):
    store = ResultStore.create(path, spec(probabilities=True), META)
    for i in range(6):
        store.write_region(i, (i * 50, 0, i * 50 + 50, 200), np.full((50, 200), 1 + i % 3, np.uint8),
                           probabilities=np.full((4, 50, 200), 0.25, np.float32), detections=dets(2),
                           window_scores={i // 2: np.array([0.1, 0.2, 0.7])})
    store.set_image_scores([0.1, 0.2, 0.7], ["a", "b", "c"])
    store.finish({"regions_done": 6})
    return store


def _members(path) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr's ZarrUserWarning for unknown objects becomes a failure
        return {name for name, _ in zarr.open_group(str(path), mode="r").members(max_depth=None)}


def test_listing_a_store_with_zarr_warns_nothing(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    assert _members(store.path) == {"labels", "labels/0", "labels/1", "probabilities", "done", "detections",
                                    "detections/table", "detections/attempt", "window_scores", "image_scores"}
    assert sorted(p.name for p in store.path.iterdir() if p.is_file()) == ["zarr.json"]
    # and the metadata survived the arrays made after it (window and image scores), read by zarr itself
    attrs = dict(zarr.open_group(str(store.path), mode="r").attrs)["napari_xt"]
    assert attrs["complete"] is True and attrs["model_config"] == META["model_config"] and attrs["store_format"] == 2


def test_a_format_1_store_lists_with_a_warning_which_is_why_format_2_exists(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    make_format_1(store.path)
    with pytest.raises(UserWarning, match="meta.json is not recognized"):
        _members(store.path)


def test_format_1_store_is_read_and_moved_into_the_attributes_on_resume(tmp_path):
    store = ResultStore.create(tmp_path / "old.zarr", spec(), META)
    store.write_region(0, (0, 0, 50, 200), np.full((50, 200), 2, np.uint8), detections=dets(3))
    old = make_format_1(store.path)
    assert is_store(store.path) and (store.path / "meta.json").is_file()

    reader = ResultStore.open(store.path)  # reading changes nothing
    assert reader.meta == old == read_meta(store.path) and reader.meta["plan"] == META["plan"]
    assert reader.done_ids().tolist() == [0] and len(reader.detections()["y"]) == 3 and not reader.complete
    assert (store.path / "meta.json").is_file()

    resumed = ResultStore.open_for_resume(store.path, IDENTITY)
    assert not (store.path / "meta.json").exists() and _members(store.path)
    meta = read_meta(store.path)
    assert meta["store_format"] == 2 and len(meta["resumed"]) == 1 and meta["model_config"] == META["model_config"]
    resumed.write_region(1, (50, 0, 100, 200), np.full((50, 200), 3, np.uint8))
    resumed.finish({"regions_done": 2})
    again = ResultStore.open(store.path)
    assert again.complete and again.done_ids().tolist() == [0, 1]
    np.testing.assert_array_equal(again.labels[0][:100, 0], [2] * 50 + [3] * 50)


def test_format_1_store_without_its_meta_json_is_a_damaged_store(tmp_path):
    """Not a readable store, but laid out as one: named as damaged (what it was made from is lost), not "no store"."""
    store = ResultStore.create(tmp_path / "old.zarr", spec(), META)
    make_format_1(store.path)
    (store.path / "meta.json").unlink()
    assert not is_store(store.path)
    with pytest.raises(StoreDamaged, match="meta.json.*made again") as err:
        ResultStore.open(store.path)
    assert err.value.fix == "remake" and err.value.path == store.path


def test_a_reader_following_the_writer_never_reads_a_torn_document_nor_complete_before_the_data(tmp_path):
    regions = 64
    store = ResultStore.create(tmp_path / "s.zarr", spec(shape=(64, 64), regions=regions),
                               {**META, "plan": {"windows": [[i] for i in range(20_000)]}})  # a big document
    reader = ResultStore.open(store.path)
    errors: list[BaseException] = []

    def write():
        try:
            for i in range(regions):
                store.write_region(i, (i, 0, i + 1, 64), np.ones((1, 64), np.uint8))
                store._update_meta(progress=i)  # republish the document as often as possible
            store.finish({"regions_done": regions})
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    writer = threading.Thread(target=write)
    writer.start()
    seen, progress = 0, -1
    while writer.is_alive() or seen < 3:
        complete = reader.complete  # re-reads the document; it must always parse
        assert len(reader.meta["plan"]["windows"]) == 20_000
        assert reader.meta.get("progress", -1) >= progress  # never an older document after a newer one
        progress = reader.meta.get("progress", -1)
        if complete:
            assert reader.n_done == regions  # complete is published after every region's data
        seen += 1
    writer.join()
    assert not errors and reader.complete and seen > 3


def test_a_cancelled_format_1_run_resumes_to_the_same_labels_as_one_run(tmp_path, model_path):
    from napari_xt.app import driver
    from napari_xt.app.events import RegionDone
    from napari_xt.app.request import make_request
    from napari_xt.synthetic import TissueSample
    from napari_xt.synthetic.export import write_ome_tiff

    image = write_ome_tiff(TissueSample(512, 768, seed=3), tmp_path / "slide.ome.tif")
    options = {"device": "cpu", "level": 0, "use_mask": False, "region_size": 256, "batch_size": 1}
    whole, out = tmp_path / "whole.xt.zarr", tmp_path / "old.xt.zarr"
    driver.predict(make_request(image, str(model_path), whole, **options))

    prepared = driver.prepare(make_request(image, str(model_path), out, **options))
    done = 0
    for event in driver.events(prepared):
        done += isinstance(event, RegionDone)
        if done == 2:
            prepared.run.cancel()
    prepared.run.store.close()
    make_format_1(out)
    old = ResultStore.open(out)
    before = old.n_done  # a reader's counts follow the store: keep this one
    assert not old.complete and 2 <= before < 6 and (out / "meta.json").is_file()

    summary = driver.predict(make_request(image, str(model_path), out, resume=True, **options))
    assert summary.regions_new == 6 - before
    resumed, reference = ResultStore.open(out), ResultStore.open(whole)
    assert resumed.complete and not (out / "meta.json").exists() and len(resumed.meta["resumed"]) == 1
    for got, want in zip(resumed.labels, reference.labels, strict=True):
        np.testing.assert_array_equal(got[:], want[:])
    assert _members(out)
