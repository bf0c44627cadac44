"""The dock's Labels overlay reads finished regions from the store off the main thread (issue 15: the reads were the
main thread's remaining per-refresh work while regions streamed in) and still shows every region, in order, with the
final full refresh, a re-sliced tile and a layer removed mid-read handled."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zarr

from napari_xt import _compat
from napari_xt.app.events import RegionDone
from napari_xt.widget import _partial
from napari_xt.widget._overlays import Overlays, open_label_levels

SHAPE = (512, 640)
SIDE = 64  # region side in level-0 px


@pytest.fixture
def store_reads(monkeypatch):
    """(thread is main, array path) of every read of a zarr array, from any thread."""
    reads: list[tuple[bool, str]] = []
    get = zarr.Array.__getitem__

    def recording(self, selection):
        reads.append((threading.current_thread() is threading.main_thread(), str(self.path)))
        return get(self, selection)

    monkeypatch.setattr(zarr.Array, "__getitem__", recording)
    return reads


def _store(tmp_path):
    """A result store's label pyramid (two levels), as the engine lays it out, and its read-only handles."""
    root = zarr.open_group(str(tmp_path / "r.xt.zarr"), mode="w")
    writers = [root.create_array(f"labels/{i}", shape=(SHAPE[0] >> i, SHAPE[1] >> i), chunks=(64, 64),
                                 dtype="uint8", fill_value=0) for i in range(2)]
    return writers, open_label_levels(tmp_path / "r.xt.zarr")


def _overlays(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)  # shown, as with the dock: the canvas holds the tile's texture
    writers, levels = _store(tmp_path)
    overlays = Overlays(viewer)
    layer = overlays.labels = viewer.add_labels(levels, multiscale=True)
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[layer]
    qtbot.waitUntil(lambda: visual.node._texture.shape[:2] == layer._slice.image.raw.shape[:2], timeout=5000)
    qtbot.wait(200)  # the first draws settle (napari may re-slice once the canvas knows its size)
    return viewer, overlays, layer, writers


def _finish(writers, i: int, value: int) -> RegionDone:
    """Region ``i`` (row-major, SIDE px) written into every level, as the engine does before the event."""
    cols = SHAPE[1] // SIDE
    y0, x0 = (i // cols) * SIDE, (i % cols) * SIDE
    for level, arr in enumerate(writers):
        s = 2**level
        arr[y0 // s:(y0 + SIDE) // s, x0 // s:(x0 + SIDE) // s] = value
    return RegionDone(i, (y0, x0, y0 + SIDE, x0 + SIDE), i + 1, 80, 0.0, None)


def _shown(layer) -> np.ndarray:
    sl = _compat.labels_slice(layer)[0]
    level = int(layer.data_level)
    oy, ox = np.asarray(layer.corner_pixels[0], dtype=int)[-2:]
    raw = np.asarray(sl.image.raw)
    truth = np.asarray(layer.data[level])[oy:oy + raw.shape[0], ox:ox + raw.shape[1]]
    return raw, truth


def _read_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == _partial.READ_THREAD]


def test_streaming_regions_are_read_off_the_main_thread_and_all_show(make_napari_viewer, qtbot, tmp_path,
                                                                     store_reads):
    viewer, overlays, layer, writers = _overlays(make_napari_viewer, qtbot, tmp_path)
    full_refreshes = overlays.n_full_refreshes
    store_reads.clear()
    n = 40
    for i in range(n):  # regions arrive faster than the throttle: several wait for the read in flight
        overlays.add_region(_finish(writers, i, 1 + i % 2))
        if i % 5 == 4:
            qtbot.wait(30)
    qtbot.waitUntil(lambda: overlays.n_shown == n and not overlays.reading, timeout=10_000)
    assert overlays.n_full_refreshes == full_refreshes  # shown by partial updates, not whole-layer refreshes
    assert store_reads, "nothing was read"
    assert not [r for r in store_reads if r[0]], "the main thread read the store while regions streamed in"
    raw, truth = _shown(layer)
    assert np.count_nonzero(truth) and (raw == truth).all()  # every region shows, with the store's pixels
    qtbot.waitUntil(lambda: not _read_threads(), timeout=2000)  # no thread lingers between reads
    overlays.flush(full=True)  # the end of a run: one full refresh
    assert overlays.n_full_refreshes == full_refreshes + 1 and overlays.n_shown == n


def _held_reads(monkeypatch):
    """Make background reads wait until the returned event is set (a read in flight, deterministically)."""
    gate = threading.Event()
    read = _partial.read_boxes

    def held(plan):
        gate.wait(5)
        return read(plan)

    monkeypatch.setattr(_partial, "read_boxes", held)
    return gate


def test_the_final_full_refresh_drops_the_read_in_flight(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer, overlays, layer, writers = _overlays(make_napari_viewer, qtbot, tmp_path)
    gate = _held_reads(monkeypatch)
    overlays.add_region(_finish(writers, 0, 2))
    assert overlays.reading
    overlays.add_region(_finish(writers, 1, 2))  # waits for the read in flight
    threading.Timer(0.1, gate.set).start()  # the read ends while the full refresh joins it
    overlays.flush(full=True)
    assert not overlays.reading and not _read_threads() and overlays.n_shown == 2
    qtbot.wait(300)  # the dropped read's answer (posted to the event loop) is ignored
    assert overlays.n_shown == 2
    raw, truth = _shown(layer)
    assert (raw == truth).all()


def test_a_tile_resliced_during_a_read_is_read_again(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer, overlays, layer, writers = _overlays(make_napari_viewer, qtbot, tmp_path)
    gate = _held_reads(monkeypatch)
    overlays.add_region(_finish(writers, 3, 1))
    assert overlays.reading
    layer.refresh()  # napari slices anew (pan, zoom) while the read is in flight: its boxes are stale
    gate.set()
    qtbot.waitUntil(lambda: overlays.n_shown == 1 and not overlays.reading, timeout=5000)
    raw, truth = _shown(layer)
    assert (raw == truth).all() and np.count_nonzero(raw)


def test_a_layer_removed_during_a_read_is_left_alone(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer, overlays, layer, writers = _overlays(make_napari_viewer, qtbot, tmp_path)
    gate = _held_reads(monkeypatch)
    overlays.add_region(_finish(writers, 0, 1))
    assert overlays.reading
    updates = []
    layer.events.labels_update.connect(lambda event: updates.append(event))
    viewer.layers.remove(layer)  # the user deletes the overlay mid-run
    gate.set()
    qtbot.waitUntil(lambda: not overlays.reading, timeout=5000)
    overlays.add_region(_finish(writers, 1, 1))
    overlays.flush(full=True)
    assert not updates and not _read_threads() and overlays.n_shown == 2


def test_a_dock_run_reads_the_store_off_the_main_thread(make_napari_viewer, qtbot, tissue_ome_tiff, seg_checkpoint,
                                                       store_reads):
    from dockhelpers import configure, make_dock

    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.open(str(tissue_ome_tiff), plugin="napari-xt")
    assert dock.add_checkpoint(seg_checkpoint)
    configure(dock, str(seg_checkpoint))
    first: list[int] = []  # how many reads there were when the first region arrived
    reads: list[tuple[bool, str]] = []  # the reads from then to the end of the run

    def at_end(_end):  # before the dock's own handler, whose final full refresh reads on the main thread
        reads.extend(store_reads[first[0]:])

    dock.runner.region.connect(lambda _p: first or first.append(len(store_reads)))
    dock.runner.ended.connect(at_end, priority=1)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: bool(reads) and not dock.runner.busy, timeout=120_000)
    assert not [r for r in reads if r[0]], "the main thread read the store while regions streamed in"
    n = dock.runner.run.n_total
    assert dock.overlays.n_shown == n  # every region counted once, the last ones by the final refresh
    assert dock.overlays.n_full_refreshes == 1  # only the final one
    assert not _read_threads()
