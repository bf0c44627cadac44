"""The result store on its own: layout, the strided label pyramid, crash-safe done-map, detections, resume checks."""

import threading

import numpy as np
import pytest
import zarr

from napari_xt import _atomic
from napari_xt.errors import NotAStore, StoreError, StoreExists, StoreMismatch
from napari_xt.store import ResultStore, StoreSpec, is_store, read_meta

IDENTITY = {"model_checksum": "m-aaaa", "image_fingerprint": "i-bbbb", "plan_checksum": "p-cccc"}
META = {**IDENTITY, "model": "seg.safetensors", "model_config": {"region_size": 256, "heads": {"seg": 4}},
        "image": "/data/slide.svs", "image_shape": [2000, 1600], "plan": {"region_size": 256, "overlap": 0},
        "started": "2024-01-01T00:00:00+00:00", "software": "napari-xt 0.1.0"}


def root_meta(path) -> dict:
    """The metadata as other tools see it: the root group's attributes, read by zarr itself."""
    return dict(zarr.open_group(str(path), mode="r").attrs)["napari_xt"]


def spec(shape=(300, 200), num_classes=4, regions=6, **kw):
    names = [f"class{i}" for i in range(num_classes)]
    colors = [[i % 256, 0, 0] for i in range(num_classes)]
    return StoreSpec(shape=shape, num_classes=num_classes, class_names=names, class_colors=colors,
                     region_count=regions, **kw)


def dets(n, offset=0.0):
    r = np.arange(n, dtype=np.float32)
    return {"y": r + offset, "x": r * 2, "h": np.full(n, 4.0, np.float32), "w": np.full(n, 3.0, np.float32),
            "cls": np.zeros(n, np.int32), "score": np.linspace(0.5, 0.9, n).astype(np.float32)}


def partition(shape, rng):
    """Non-chunk-aligned cores tiling ``shape`` exactly once: row bands, each cut into its own columns.

    Includes 1-3 px thin bands so some cores hold no sample point of the coarser levels."""
    h, w = shape
    ys = sorted(set(rng.choice(np.arange(1, h), 4, replace=False).tolist() + [1, 3]))
    cores = []
    for y0, y1 in zip([0, *ys], [*ys, h], strict=True):
        xs = sorted(set(rng.choice(np.arange(1, w), 3, replace=False).tolist() + [2]))
        cores += [(y0, x0, y1, x1) for x0, x1 in zip([0, *xs], [*xs, w], strict=True)]
    return cores


# -- making and opening ---------------------------------------------------------------------------------------
def test_create_open_round_trip_and_meta(tmp_path):
    sp = spec(shape=(1037, 613), chunk=128, downsample_to_level0=4.0, probabilities=True)
    store = ResultStore.create(tmp_path / "s.zarr", sp, META)
    assert is_store(store.path) and not is_store(tmp_path) and not is_store(tmp_path / "nope")
    assert [a.shape for a in store.labels] == [(1037, 613), (519, 307), (260, 154), (130, 77)]  # until max < 256
    assert all(a.dtype == np.uint8 and a.chunks == (128, 128) and a.fill_value == 0 for a in store.labels)
    assert store.probabilities.shape == (4, 1037, 613) and store.probabilities.dtype == np.uint8

    meta = root_meta(store.path)
    for key, value in META.items():
        assert meta[key] == value
    assert meta["complete"] is False and meta["spec"]["shape"] == [1037, 613] and "created" in meta
    assert meta["store_format"] == 2 and not (store.path / "meta.json").exists()
    assert not list(store.path.glob(".*"))  # no temporary files left behind

    root = zarr.open_group(str(store.path), mode="r")
    mirrored = root.attrs["napari_xt"]
    assert mirrored["model_checksum"] == "m-aaaa" and mirrored["image"] == "/data/slide.svs"
    ms = root["labels"].attrs["ome"]["multiscales"][0]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2", "3"]
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [[4, 4], [8, 8], [16, 16], [32, 32]]
    assert root["labels"].attrs["ome"]["image-label"]["properties"][3]["class"] == "class3"

    again = ResultStore.open(store.path)
    assert again.spec == sp and again.meta == store.meta and not again.complete and again.n_done == 0
    assert [a.shape for a in again.labels] == [a.shape for a in store.labels]
    with pytest.raises(StoreError, match="read-only"):
        again.write_region(0, (0, 0, 10, 10), np.zeros((10, 10), np.uint8))
    with pytest.raises(StoreError, match="not a napari-xt result store"):
        ResultStore.open(tmp_path)


def test_existing_paths_are_never_silently_overwritten(tmp_path):
    out = tmp_path / "s.zarr"
    first = ResultStore.create(out, spec(), META)
    first.write_region(0, (0, 0, 10, 10), np.ones((10, 10), np.uint8))
    with pytest.raises(StoreExists, match=r"s\.zarr already exists \(a result store\)") as err:
        ResultStore.create(out, spec(), META)
    assert err.value.is_store and err.value.path == out and "--" not in str(err.value)  # the CLI adds flag advice
    assert ResultStore.open(out).n_done == 1  # untouched

    second = ResultStore.create(out, spec(regions=3), {**META, "model": "other"}, overwrite=True)
    assert second.n_done == 0 and second.spec.region_count == 3 and second.meta["model"] == "other"
    assert second.labels[0][:].max() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    for overwrite in (False, True):  # not a store: refused even with overwrite
        with pytest.raises(StoreExists, match="mine") as err:
            ResultStore.create(folder, spec(), META, overwrite=overwrite)
        assert not err.value.is_store and isinstance(err.value, NotAStore) == overwrite
    assert (folder / "thesis.txt").read_text() == "precious"
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(StoreError, match="a file"):
        ResultStore.create(tmp_path / "file.zarr", spec(), META)

    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert ResultStore.create(empty, spec(), META).n_done == 0  # an empty folder is fine
    assert ResultStore.create(tmp_path / "new" / "deeper.zarr", spec(), META).spec.shape == (300, 200)


# -- the label pyramid ------------------------------------------------------------------------------------------
def test_pyramid_is_strided_and_independent_of_completion_order(tmp_path):
    rng = np.random.default_rng(0)
    shape = (437, 389)
    cores = partition(shape, rng)
    sp = spec(shape=shape, num_classes=7, regions=len(cores), chunk=64, min_level_size=40)
    reference = np.zeros(shape, np.uint8)
    data = []
    for y0, x0, y1, x1 in cores:
        block = rng.integers(0, 7, (y1 - y0, x1 - x0), dtype=np.uint8)
        reference[y0:y1, x0:x1] = block
        data.append(block)

    results = []
    for name, order in (("a", range(len(cores))), ("b", rng.permutation(len(cores)))):
        store = ResultStore.create(tmp_path / f"{name}.zarr", sp, META)
        for i in order:
            store.write_region(int(i), cores[i], data[i])
        assert store.n_done == len(cores)
        results.append([a[:] for a in ResultStore.open(store.path).labels])

    a, b = results
    assert len(a) == 5  # 437 -> 219 -> 110 -> 55 -> 28 (< 40)
    np.testing.assert_array_equal(a[0], reference)
    for level, arr in enumerate(a):
        np.testing.assert_array_equal(arr, reference[:: 2**level, :: 2**level])
        np.testing.assert_array_equal(arr, b[level])


def test_probabilities_are_optional_and_uint8(tmp_path):
    without = ResultStore.create(tmp_path / "a.zarr", spec(), META)
    assert without.probabilities is None
    without.write_region(0, (0, 0, 20, 30), np.ones((20, 30), np.uint8), probabilities=np.ones((4, 20, 30)))
    assert without.is_done(0) and not (without.path / "probabilities").exists()

    store = ResultStore.create(tmp_path / "b.zarr", spec(probabilities=True), META)
    p = np.zeros((4, 20, 30), np.float32)
    p[2] = 1.0
    p[1, :, :10] = 0.5
    store.write_region(0, (5, 7, 25, 37), np.full((20, 30), 2, np.uint8), probabilities=p)
    got = ResultStore.open(store.path).probabilities
    assert got.dtype == np.uint8 and got.shape == (4, 300, 200)
    np.testing.assert_array_equal(got[:, 5:25, 7:37], np.rint(p * 255).astype(np.uint8))
    assert got[:, :5].max() == 0
    with pytest.raises(StoreError, match=r"probabilities are \(3, 20, 30\)"):
        store.write_region(1, (0, 0, 20, 30), None, probabilities=np.zeros((3, 20, 30), np.uint8))


def test_many_classes_give_uint16_labels(tmp_path):
    store = ResultStore.create(tmp_path / "s.zarr", spec(num_classes=300, shape=(64, 64)), META)
    assert all(a.dtype == np.uint16 for a in store.labels)
    labels = np.full((32, 64), 299, np.int64)
    store.write_region(0, (0, 0, 32, 64), labels)
    assert ResultStore.open(store.path).labels[0][:32].min() == 299
    small = ResultStore.create(tmp_path / "u8.zarr", spec(num_classes=255, shape=(64, 64)), META)
    assert small.labels[0].dtype == np.uint8
    with pytest.raises(StoreError, match="does not fit uint8"):
        small.write_region(0, (0, 0, 32, 64), labels)


def test_bad_region_writes_are_refused(tmp_path):
    store = ResultStore.create(tmp_path / "s.zarr", spec(), META)
    with pytest.raises(StoreError, match="outside"):
        store.write_region(0, (290, 0, 310, 10), np.zeros((20, 10), np.uint8))
    with pytest.raises(StoreError, match=r"labels are \(5, 5\)"):
        store.write_region(0, (0, 0, 10, 10), np.zeros((5, 5), np.uint8))
    with pytest.raises(StoreError, match="region id 6"):
        store.write_region(6, (0, 0, 10, 10), np.zeros((10, 10), np.uint8))
    with pytest.raises(StoreError, match="missing"):
        store.write_region(0, (0, 0, 10, 10), None, detections={"y": np.zeros(2)})
    assert store.n_done == 0


# -- done-map and detections -----------------------------------------------------------------------------------
def test_region_is_done_only_after_write_region_returns(tmp_path, monkeypatch):
    store = ResultStore.create(tmp_path / "s.zarr", spec(), META)
    reader = ResultStore.open(store.path)
    seen = []
    real = ResultStore._append_detections

    def spy(self, rows):
        seen.append((self.is_done(3), reader.is_done(3), reader.n_done))
        return real(self, rows)

    monkeypatch.setattr(ResultStore, "_append_detections", spy)
    store.write_region(3, (0, 0, 50, 50), np.ones((50, 50), np.uint8), detections=dets(2))
    assert seen == [(False, False, 0)]
    assert store.is_done(3) and reader.is_done(3) and reader.done_ids().tolist() == [3]


@pytest.mark.parametrize("where", ["mark", "detections"])
def test_crash_leaves_region_not_done_and_redo_does_not_duplicate(tmp_path, monkeypatch, where):
    out = tmp_path / "s.zarr"
    store = ResultStore.create(out, spec(), META)
    store.write_region(1, (0, 100, 50, 200), np.ones((50, 100), np.uint8), detections=dets(3, offset=100))

    def crash_mark(self, region_id):
        raise RuntimeError("killed")

    real_append = ResultStore._append_detections

    def crash_mid_append(self, rows):  # the table grew but the rows never landed
        self._det.resize((self._det.shape[0] + len(rows), self._det.shape[1]))
        raise RuntimeError("killed")

    with monkeypatch.context() as m:
        if where == "mark":
            m.setattr(ResultStore, "_mark_done", crash_mark)
        else:
            m.setattr(ResultStore, "_append_detections", crash_mid_append)
        with pytest.raises(RuntimeError):
            store.write_region(0, (0, 0, 50, 100), np.full((50, 100), 2, np.uint8), detections=dets(4))

    for view in (store, ResultStore.open(out)):  # the writer and a fresh reader (as after a restart) agree
        assert not view.is_done(0) and view.done_ids().tolist() == [1]
        assert view.detections()["region_id"].tolist() == [1, 1, 1]

    resumed = ResultStore.open_for_resume(out, IDENTITY)
    assert ResultStore._append_detections is real_append
    resumed.write_region(0, (0, 0, 50, 100), np.full((50, 100), 2, np.uint8), detections=dets(4))
    d = ResultStore.open(out).detections()
    assert d["region_id"].tolist() == [0, 0, 0, 0, 1, 1, 1]  # sorted by region id, no duplicates
    np.testing.assert_array_equal(d["y"][:4], np.arange(4, dtype=np.float32))
    assert d["y"].dtype == np.float32 and d["cls"].dtype == np.int32 and d["region_id"].dtype == np.int32


def test_rewriting_a_region_replaces_its_detections(tmp_path):
    store = ResultStore.create(tmp_path / "s.zarr", spec(), META)
    store.write_region(4, (100, 0, 150, 50), None, detections=dets(2))
    store.write_region(2, (0, 0, 50, 50), None, detections=dets(1, offset=7))
    store.write_region(4, (100, 0, 150, 50), None, detections=dets(3, offset=10))
    d = store.detections()
    assert d["region_id"].tolist() == [2, 4, 4, 4] and d["y"].tolist() == [7, 10, 11, 12]
    store.write_region(4, (100, 0, 150, 50), None, detections={})  # now none
    assert ResultStore.open(store.path).detections()["region_id"].tolist() == [2]
    assert store.n_done == 2


def test_detection_only_store_and_scores(tmp_path):
    store = ResultStore.create(tmp_path / "s.zarr", spec(num_classes=0, regions=2), META)
    assert store.labels == [] and store.probabilities is None
    assert len(store.detections()["y"]) == 0 and store.detections()["cls"].dtype == np.int32
    store.write_region(0, (0, 0, 300, 100), None, detections=dets(2), window_scores={0: [0.2, 0.8]})
    with pytest.raises(StoreError, match="no label map"):
        store.write_region(1, (0, 100, 300, 200), np.zeros((300, 100), np.uint8))
    store.set_window_scores(1, np.array([0.6, 0.4]))
    store.set_window_scores(0, np.array([0.3, 0.7]))  # the latest wins
    store.set_image_scores(np.array([0.1, 0.9]), ["sea", "ship"])
    again = ResultStore.open(store.path)
    ws = again.window_scores()
    assert sorted(ws) == [0, 1] and np.allclose(ws[0], [0.3, 0.7]) and np.allclose(ws[1], [0.6, 0.4])
    scores, names = again.image_scores()
    assert np.allclose(scores, [0.1, 0.9]) and names == ["sea", "ship"]
    assert ResultStore.create(tmp_path / "t.zarr", spec(), META).image_scores() is None


# -- resume and finish -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, what", [("model_checksum", "model"), ("image_fingerprint", "image"),
                                       ("plan_checksum", "region plan")])
def test_resume_refuses_another_model_image_or_plan(tmp_path, key, what):
    out = tmp_path / "s.zarr"
    ResultStore.create(out, spec(), META)
    with pytest.raises(StoreMismatch) as err:
        ResultStore.open_for_resume(out, {**IDENTITY, key: "other-1234"})
    msg = str(err.value)
    assert str(out) in msg and f"made with {what}" in msg and IDENTITY[key] in msg and "other-1234" in msg
    assert err.value.path == out and len(err.value.problems) == 1 and "--" not in msg  # the CLI words the advice
    if key == "model_checksum":
        assert "seg.safetensors" in msg
    store = ResultStore.open_for_resume(out, IDENTITY)
    assert len(store.meta["resumed"]) == 1 and store.writable


def test_finish_marks_complete(tmp_path):
    store = ResultStore.create(tmp_path / "s.zarr", spec(), META)
    reader = ResultStore.open(store.path)
    assert not store.complete and not reader.complete
    store.finish({"regions_done": 6, "regions_per_s": float("nan")})
    meta = root_meta(store.path)
    assert meta["complete"] is True and meta["summary"]["regions_done"] == 6 and "finished" in meta
    assert meta["summary"]["regions_per_s"] is None  # strict JSON in zarr.json: other tools' parsers refuse NaN
    assert "NaN" not in (store.path / "zarr.json").read_text()
    assert meta["model_config"] == META["model_config"] and store.meta == meta == read_meta(store.path)
    assert store.complete and reader.complete and ResultStore.open(store.path).complete
    assert not [p for p in store.path.iterdir() if p.name.endswith(".tmp")]


def test_reader_can_read_while_writer_writes(tmp_path):
    shape = (256, 256)
    cores = [(y, x, y + 64, x + 64) for y in range(0, 256, 64) for x in range(0, 256, 64)]
    store = ResultStore.create(tmp_path / "s.zarr", spec(shape=shape, regions=len(cores), chunk=48,
                                                          min_level_size=32), META)
    reader = ResultStore.open(store.path)
    errors = []

    def write():
        try:
            for i, core in enumerate(cores):
                store.write_region(i, core, np.full((64, 64), 1 + i % 3, np.uint8), detections=dets(1))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    writer = threading.Thread(target=write)
    writer.start()
    reads = 0
    while writer.is_alive() or reads < 3:
        done = reader.done_ids()
        level0 = reader.labels[0][:]
        for i in done:  # a region marked done is fully visible
            y0, x0, y1, x1 = cores[i]
            assert level0[y0:y1, x0:x1].min() >= 1
        assert set(reader.detections()["region_id"].tolist()) <= set(reader.done_ids().tolist())
        reads += 1
    writer.join()
    assert not errors and reader.n_done == len(cores)
    np.testing.assert_array_equal(reader.labels[2][:], reader.labels[0][::4, ::4])


def test_metadata_is_published_atomically(tmp_path, monkeypatch):
    store = ResultStore.create(tmp_path / "s.zarr", spec(), META)
    before = (store.path / "zarr.json").read_text()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(_atomic.os, "replace", boom)  # the rename that publishes the new zarr.json fails
    with pytest.raises(OSError):
        store.finish({"x": 1})
    assert (store.path / "zarr.json").read_text() == before
    assert not store.complete and not ResultStore.open(store.path).complete  # memory and disk both say: not done
    assert [p.name for p in store.path.iterdir() if p.name.startswith(".")] == []
