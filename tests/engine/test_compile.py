"""``RunOptions.compile`` (``--compile``, issue 14): compile + warm-up before any region is read, a clear fallback
where torch.compile cannot work, results unchanged. torch.compile itself is stubbed (a real CPU compile takes
~50 s here): what is tested is the engine's side of it."""

import logging

import numpy as np
import torch

import napari_xt.engine.compiling as compiling
import napari_xt.engine.reader as reader
from napari_xt.app.driver import prepare
from napari_xt.app.request import make_request
from napari_xt.store import ResultStore


def _run(image, model_path, out, **kw):
    req = make_request(str(image), str(model_path), str(out), device="cpu", use_mask=False, level=1, batch_size=3,
                       window_size=2, **kw)
    run = prepare(req).run
    list(run)
    return run


def test_compile_warms_up_before_the_first_read(tissue_ome_tiff, model_path, tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(compiling, "compile_problem", lambda device: None)

    def fake_compile(fn, dynamic=None):
        events.append(("compile", dynamic))

        def compiled(x):
            events.append(("encode", x.shape[0], bool((x == 0).all())))
            return fn(x)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    real_read = reader.read_region_pixels
    monkeypatch.setattr(reader, "read_region_pixels", lambda *a: events.append(("read",)) or real_read(*a))
    reference = _run(tissue_ome_tiff, model_path, tmp_path / "ref.zarr")
    events.clear()
    run = _run(tissue_ome_tiff, model_path, tmp_path / "c.zarr", compile=True)
    assert run.compiled and run.compile_note is None and run.stage_seconds["compile"] > 0
    first_read = events.index(("read",))
    assert events[0] == ("compile", True)  # one dynamic-batch compile
    warm = [e for e in events[:first_read] if e[0] == "encode"]
    assert warm and all(e[2] for e in warm) and {e[1] for e in warm} == {4, 12}  # 1 and 3 zero regions, 4 tiles each
    assert run.model.region_encoder.state_dict().keys() == reference.model.region_encoder.state_dict().keys()
    for a, b in zip(ResultStore.open(tmp_path / "ref.zarr").labels, ResultStore.open(tmp_path / "c.zarr").labels,
                    strict=True):
        np.testing.assert_array_equal(a[:], b[:])


def test_without_a_compiler_the_run_goes_on_uncompiled_and_says_why(tissue_ome_tiff, model_path, tmp_path,
                                                                    monkeypatch, caplog):
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    called = []
    monkeypatch.setattr(torch, "compile", lambda *a, **k: called.append(1))
    with caplog.at_level(logging.WARNING):
        run = _run(tissue_ome_tiff, model_path, tmp_path / "n.zarr", compile=True)
    assert not called and not run.compiled and run.store.n_done == run.n_total == 12
    assert "C++ compiler" in run.compile_note and "without torch.compile" in caplog.text
