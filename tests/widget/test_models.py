"""Choosing a model in the dock: Browse… for a napari-xt checkpoint, a released xT checkpoint, and a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm  # before any viewer: see _released_ckpt
import torch
from dockhelpers import CLASSES, buttons, make_dock
from qtpy.QtWidgets import QFileDialog

from napari_xt.model.encoders.catalogue import TIMM_ENCODERS
from napari_xt.widget._fields import BROWSE


def _choose_file(monkeypatch, path) -> list:
    """Make the dock's file dialog answer ``path`` (as if the user picked it); returns the calls it got."""
    calls = []

    def answer(*args, **kwargs):
        calls.append(args)
        return (str(path), "") if path else ("", "")

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(answer))
    return calls


def _released_ckpt(path: Path, num_classes: int = 7) -> Path:
    """A released-format xT checkpoint (Swin-V2-T + Hyper) whose tensors cost nothing on disk.

    Every tensor is one stored value expanded to the released shape (torch saves the storage, not the view), so the
    file is a few hundred kB while its keys and shapes are those of the real thing, which is all a description
    reads. The Hyper decoder's keys follow tests/model/test_xt_import.py. timm is imported at the top of this module:
    importing torchvision (timm does) once an OpenGL context exists loads triton's LLVM after Mesa's llvmpipe one,
    and the process crashes (seen under Xvfb).
    """
    with torch.device("meta"):
        swin = timm.create_model(TIMM_ENCODERS["swinv2_tiny"][0], features_only=True, pretrained=False)
    one = torch.zeros(1)

    def fake(*shape):
        return one.expand(*shape)

    state = {f"encoder.model.{k}": fake(*v.shape) for k, v in swin.state_dict().items()}
    c_out, hidden = swin.feature_info.channels()[-1], 768
    state.update({"decoder.cls_token": fake(1, 1, hidden), "decoder.input_proj.weight": fake(hidden, c_out),
                  "decoder.input_proj.bias": fake(hidden), "decoder.cls.0.weight": fake(hidden),
                  "decoder.cls.0.bias": fake(hidden), "decoder.cls.1.weight": fake(num_classes, hidden),
                  "decoder.cls.1.bias": fake(num_classes)})
    for i in range(2):
        p = f"decoder.layers.{i}."
        state.update({p + "attn.qkv.weight": fake(3 * hidden, hidden), p + "attn.qkv.bias": fake(3 * hidden),
                      p + "attn.proj.weight": fake(hidden, hidden), p + "attn.proj.bias": fake(hidden),
                      p + "input_layernorm.weight": fake(hidden), p + "post_attention_layernorm.weight": fake(hidden),
                      p + "mlp.gate_proj.weight": fake(4 * hidden, hidden),
                      p + "mlp.up_proj.weight": fake(4 * hidden, hidden),
                      p + "mlp.down_proj.weight": fake(hidden, 4 * hidden)})
    torch.save({"state_dict": state, "epoch": 1}, path)
    return path


def test_browse_selects_a_checkpoint_and_describes_its_classes(make_napari_viewer, qtbot, seg_checkpoint,
                                                               monkeypatch, notes):
    _viewer, dock = make_dock(make_napari_viewer, qtbot)
    before = dock.model.value
    assert before != str(seg_checkpoint)

    calls = _choose_file(monkeypatch, None)  # the user closes the dialog: nothing changes
    dock.model.value = BROWSE
    assert len(calls) == 1 and dock.model.value == before

    calls = _choose_file(monkeypatch, seg_checkpoint)
    dock.model.value = BROWSE
    qtbot.waitUntil(lambda: dock.model.value == str(seg_checkpoint), timeout=30_000)
    assert len(calls) == 1
    info = dock.model_info.value
    assert all(name in info for name in CLASSES) and "seg.safetensors" in info
    assert "#c878c8" in info  # stroma's colour (200, 120, 200) from the checkpoint
    choices = list(dock.model.choices)
    assert choices[-1] == BROWSE and choices.count(str(seg_checkpoint)) == 1
    assert dock.region_size.value == 256 and dock.context_encoder.value == "transformer_xl"
    assert not notes.errors()


def test_released_xt_checkpoint_is_described(make_napari_viewer, qtbot, tmp_path, monkeypatch, notes):
    ckpt = _released_ckpt(tmp_path / "xt-swinv2t-hyper.ckpt")
    assert ckpt.stat().st_size < 5_000_000
    _viewer, dock = make_dock(make_napari_viewer, qtbot)
    _choose_file(monkeypatch, ckpt)
    dock.model.value = BROWSE
    qtbot.waitUntil(lambda: dock.model.value == str(ckpt), timeout=60_000)
    info = dock.model_info.value
    assert "xt-swinv2t-hyper.ckpt" in info and "classification" in info
    assert "swinv2_tiny + hyper, 7 classes, 512/256 px" in info  # the importer's reading of the file
    assert dock.region_size.value == 512 and dock.region_encoder.value == "swinv2_tiny"
    assert dock.context_encoder.value == "hyper"
    assert not dock.score_class.native.isHidden() and not dock.top_classes.native.isHidden()
    assert dock.min_score.native.isHidden()
    assert not notes.errors()


@pytest.mark.parametrize("content", [b"\x00garbage" * 10, b"PK\x03\x04 not really a zip"])
def test_browsing_a_broken_file_says_why(make_napari_viewer, qtbot, tmp_path, monkeypatch, notes, content):
    viewer, dock = make_dock(make_napari_viewer, qtbot)
    viewer.add_image(torch.zeros(64, 64).numpy(), name="grey")
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(content)
    before = dock.model.value
    _choose_file(monkeypatch, bad)
    dock.model.value = BROWSE
    qtbot.waitUntil(lambda: bool(notes.errors()), timeout=30_000)
    assert any("broken.ckpt" in m and "Cannot use this checkpoint" in m for m in notes.errors())
    assert dock.model.value == before and str(bad) not in dock.model.choices
    assert buttons(dock) == (True, False, False)
