"""The dock's encoder choice: the catalogue grouped with licence, gate and weight state; random weights labelled;
a measured time estimate for the chosen encoder on the current image and device, computed off the main thread."""

from __future__ import annotations

import numpy as np
import pytest
from dockhelpers import configure, make_dock

from napari_xt.app import speed
from napari_xt.app.catalog import ENCODER_GROUPS, EncoderInfo, ModelInfo
from napari_xt.widget._encoder_picker import details_html


def _fake_hub(tmp_path, monkeypatch, repo: str, filename: str = "model.safetensors") -> None:
    """An HF_HOME whose hub cache holds ``repo`` (the layout huggingface_hub reads; the file's bytes do not matter
    for a weight *state*), no token, online: gated entries need a token, others are downloadable."""
    home = tmp_path / "hf_home"
    org, name = repo.split("/")
    rev = "0123456789abcdef0123456789abcdef01234567"
    snap = home / "hub" / f"models--{org}--{name}" / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(b"not really weights")
    (home / "hub" / f"models--{org}--{name}" / "refs").mkdir()
    (home / "hub" / f"models--{org}--{name}" / "refs" / "main").write_text(rev)
    monkeypatch.setenv("HF_HOME", str(home))
    for var in ("HF_HUB_CACHE", "HF_TOKEN", "HF_HUB_OFFLINE", "NAPARI_XT_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)


def test_encoders_are_grouped_with_licence_gate_and_weight_state(make_napari_viewer, qtbot, tmp_path, monkeypatch,
                                                                 notes):
    _fake_hub(tmp_path, monkeypatch, "timm/vit_small_patch14_dinov2.lvd142m")
    _viewer, dock = make_dock(make_napari_viewer, qtbot)
    picker = dock.encoder_picker
    infos = {i.name: i for i in dock.catalog.encoders}
    names = list(picker.combo.choices)
    groups = [infos[n].group for n in names]
    assert groups == sorted(groups, key=ENCODER_GROUPS.index)  # pathology, remote sensing, general, small
    assert set(groups) == set(ENCODER_GROUPS) and {"uni", "dinov2-vits14", "tiny", "swinv2_tiny"} <= set(names)
    labels = dict(zip(picker.combo.choices, [picker.combo.native.itemText(i) for i in range(len(names))],
                      strict=True))
    assert labels["uni"] == "pathology · uni  [needs a token]"
    assert labels["dinov2-vits14"] == "general · dinov2-vits14  [cached]"
    assert labels["dinov2-vitb14"].endswith("[downloadable]")  # tiny: see the trained-model test below
    assert not dock.region_encoder.native.isVisibleTo(dock.native)  # the plain combo gives way to the picker

    dock.model.value = "tiny-hyper-seg"
    assert picker.combo.value == "tiny" == dock.region_encoder.value  # follows the model
    assert "random weights (preset)" in picker.details.value
    picker.combo.value = "uni"  # browse another entry: its facts, and that the Run still uses the model's
    text = picker.details.value
    assert "CC-BY-NC-ND-4.0" in text and "gated" in text and "needs a hub token" in text
    assert "the model uses tiny" in text and "--region-encoder uni" in text
    assert not notes.errors()


def test_details_label_random_init_encoders():
    tiny = EncoderInfo("tiny", "small", weight_state="none")
    assert "random init only" in details_html(tiny, None)  # no model: a fresh encoder, the catalogue's state
    vit = EncoderInfo("dinov2-vits14", "general", licence="Apache-2.0", weight_state="cached", patch_size=14)
    model = ModelInfo(key="m.safetensors", label="m", source="file", region_encoder="dinov2-vits14",
                      description="random-init dinov2-vits14 region encoder (not pretrained)")
    text = details_html(vit, model)
    assert "random-init encoder (not pretrained)" in text and "ViT patch 14" in text
    assert "trained, in the model's file" in text and "weights cached" not in text  # the model's weights, not hub's
    assert "weights cached" in details_html(vit, None)


def test_a_trained_model_s_encoder_shows_what_the_model_carries(make_napari_viewer, qtbot, seg_checkpoint, notes):
    """Issue 23: with a trained model selected, its tiny encoder was shown in bold as "random init only: no pretrained
    weights exist for it". The model's file holds its trained encoder; the catalogue's weight state is about building
    a fresh one, shown only for another encoder (which means training a new model)."""
    _viewer, dock = make_dock(make_napari_viewer, qtbot)
    picker = dock.encoder_picker
    assert dock.add_checkpoint(seg_checkpoint)
    assert picker.combo.value == "tiny"
    text = picker.details.value
    assert "random init" not in text and "trained, in the model's file" in text
    item = picker.combo.native.itemText(picker.combo.native.currentIndex())
    assert item == "small · tiny  [in the model]"
    picker.combo.value = "swinv2_tiny"  # another encoder: a fresh one, so the catalogue's weight state
    text = picker.details.value
    assert "weights: " in text and "in the model's file" not in text and "the model uses tiny" in text
    dock.model.value = "tiny-hyper-seg"  # a random-weight preset: said as such, and not "in the model"
    assert "random weights (preset)" in picker.details.value and "in the model" not in picker.details.value
    assert picker.combo.native.itemText(picker.combo.native.currentIndex()).endswith("[random init]")
    assert not notes.errors()


def test_the_time_estimate_is_measured_off_the_main_thread_and_shown(make_napari_viewer, qtbot, monkeypatch, notes):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8), name="rgb",
                     rgb=True)
    picker = dock.encoder_picker
    configure(dock, "tiny-hyper-seg", level=0, region_size=256)
    qtbot.waitUntil(lambda: picker.estimate is not None, timeout=60_000)
    est = picker.estimate
    assert est.encoder == "tiny" and est.device == "CPU" and est.regions == 4  # 2 x 2 regions of 256 px
    assert est.sub_regions == 16 and est.seconds_per_region > 0  # 64 px sub-regions of the tiny preset
    assert "for this image on CPU" in picker.speed.value and "slow" not in picker.speed.value
    assert picker.speed.value.startswith("about ") and "timings" in picker.speed.value and est.timings > 1

    monkeypatch.setattr(speed, "SLOW_S", 0.0)  # every encoder is "slow" now: the note turns into a warning
    dock.region_size.value = 128
    qtbot.waitUntil(lambda: picker.estimate is not None and picker.estimate.regions == 16, timeout=60_000)
    assert "slow: about" in picker.speed.value and "GPU" in picker.speed.value
    assert not notes.errors()


def test_an_encoder_too_large_for_free_memory_is_not_built_just_to_time_it(monkeypatch):
    """Browsing a ViT-g in the list must not allocate 4.5 GB on a laptop: its size is read on the meta device first."""
    import torch

    from napari_xt.model import create_region_encoder

    built: list[str] = []
    real = create_region_encoder

    def counting(*args, **kwargs):
        built.append(str(torch.empty(0).device))  # where the default device points while building
        return real(*args, **kwargs)

    monkeypatch.setattr("napari_xt.model.create_region_encoder", counting)
    n = sum(p.numel() for p in real("convnext_tiny", pretrained=False).parameters())
    monkeypatch.setattr(speed, "_free_bytes", lambda: 4 * n)  # half of it is less than the weights
    try:
        speed.time_encoder("convnext_tiny", sub_region_size=64, batch=1, device="cpu")
    except speed.TooLargeToTime as err:
        message = str(err)
    else:
        raise AssertionError("an encoder larger than the memory share was timed")
    assert f"{n / 1e6:.0f} M parameters" in message and "GB of memory is free" in message
    assert built == ["meta"]  # sized on the meta device, never built for real

    monkeypatch.setattr(speed, "_free_bytes", lambda: 64 * n)  # plenty free: timed as before
    seconds, strides, where = speed.time_encoder("convnext_tiny", sub_region_size=64, batch=1, device="cpu")
    assert seconds > 0 and where == "CPU" and built[-1] == "cpu"


class ScriptedRun:
    """A batch whose timings are known: each ``run()`` advances the injected clock by the next scripted duration."""

    def __init__(self, durations):
        self.durations, self.now, self.runs = list(durations), 0.0, 0

    def run(self):
        self.now += self.durations[self.runs]
        self.runs += 1

    def clock(self):
        return self.now


def test_one_timing_under_load_does_not_make_the_estimate():
    """Issue 23: 2.3 s each under load, 0.029 s a minute later. A stretched timing is outvoted, not taken."""
    busy_first = ScriptedRun([2.3, 0.030, 0.029, 0.031, 0.030, 0.030, 0.030, 0.030, 0.030])
    timing = speed.measure(busy_first.run, busy_first.clock)
    assert 3 < timing.n <= speed.MAX_TIMINGS and 0.029 <= timing.median <= 0.031
    quiet = ScriptedRun([0.030, 0.031, 0.029, 5.0])
    timing = speed.measure(quiet.run, quiet.clock)
    assert timing.n == speed.MIN_TIMINGS and quiet.runs == 3 and timing.spread < speed.OUTLIER
    slow = ScriptedRun([5.0] * 9)  # a ViT-H on a CPU: the budget allows one timing
    timing = speed.measure(slow.run, slow.clock)
    assert timing.n == 1 and timing.median == 5.0


def test_an_estimate_far_off_the_last_one_is_measured_again(monkeypatch):
    monkeypatch.setattr(speed, "_LAST", {})
    key = ("tiny", "[]", 3, 64, 4, "cpu", "auto")
    quiet = ScriptedRun([0.030] * 3)
    assert speed.measure_again_if_off(key, quiet.run, quiet.clock).median == pytest.approx(0.030)
    # the machine got busy for a whole round (consistent within it): measured again, the faster round is kept
    busy = ScriptedRun([0.90, 0.95, 0.85, 0.030, 0.029, 0.031])
    timing = speed.measure_again_if_off(key, busy.run, busy.clock)
    assert busy.runs == 6 and timing.median == pytest.approx(0.030) and timing.n == 6 and timing.spread > speed.OUTLIER
    note = speed.SpeedEstimate("tiny", "CPU", 64, 16, 64, timing.median * 16, timing.n, timing.spread).note()
    assert note.startswith("about ") and "about 0.48 s each, median of 6 timings" in note and "busy" in note
    same = ScriptedRun([0.031] * 3)  # close to the last figure: one round is enough
    assert speed.measure_again_if_off(key, same.run, same.clock).n == 3 and same.runs == 3


def test_the_encoder_is_timed_with_the_threads_a_dock_run_uses(monkeypatch):
    """On a loaded 2-core machine a tiny-encoder batch took 860 ms with torch's 2 threads and 1 ms with 1: the
    estimate is timed as the dock's run will run (one core left to the viewer), and a run that starts while an
    estimate is still timing keeps its lowered thread count when the estimate ends."""
    import torch

    from napari_xt.app import threads

    monkeypatch.setattr(threads, "cores", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        real = speed.measure_again_if_off
        monkeypatch.setattr(speed, "measure_again_if_off",
                            lambda key, run: (seen.append(torch.get_num_threads()), real(key, run))[1])
        speed.time_encoder_timing("tiny", sub_region_size=64, batch=2)
        assert seen == [1] and torch.get_num_threads() == 2

        estimate, run = threads.spare_a_core(), threads.spare_a_core()
        estimate.__enter__()
        run.__enter__()  # Run clicked while the estimate times
        estimate.__exit__(None, None, None)
        assert torch.get_num_threads() == 1  # the run keeps the core it left to the viewer
        run.__exit__(None, None, None)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
