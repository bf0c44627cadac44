"""Importing released xT checkpoints: exact logits against the reference implementation, safety, strictness.

``../shared/xt_ref`` (next to the project checkout; override with ``NAPARI_XT_REF``) holds the key/shape list of a
released Swin-V2-T + Hyper (512/256, 284 classes) checkpoint, a generator of deterministic synthetic weights for it,
and the logits the public reference implementation computes with those weights on a fixed input.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from napari_xt.model import XTConfig, XTModel, build_model, load_model
from napari_xt.model.checkpoint import CheckpointError
from napari_xt.model.xt_import import (
    convert_xt,
    import_xt_checkpoint,
    import_xt_state_dict,
    infer_config,
    map_key,
    unwrap_state_dict,
)

XT_REF = Path(os.environ.get("NAPARI_XT_REF", Path(__file__).resolve().parents[3] / "shared" / "xt_ref"))
KEYS = XT_REF / "swinv2t_hyper_512_256.keys.tsv"
SEED7 = XT_REF / "swinv2t_hyper_512_256.seed7.json"

pytestmark = pytest.mark.skipif(not (KEYS.is_file() and SEED7.is_file()),
                                reason=f"reference data not found at {XT_REF}")


def _synth_module():
    spec = importlib.util.spec_from_file_location("xt_ref_synth_weights", XT_REF / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def synth():
    return _synth_module()


@pytest.fixture(scope="module")
def released(synth) -> dict[str, torch.Tensor]:
    return synth.synth(synth.keys_shapes(str(KEYS)), seed=7)


@pytest.fixture(scope="module")
def ckpt(released, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("xt") / "swin-t-hyper-512-256-top1.ckpt"
    torch.save({"state_dict": released, "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def imported(ckpt) -> XTModel:
    return import_xt_checkpoint(ckpt)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def test_logits_match_reference(imported, synth):
    ref = json.loads(SEED7.read_text())
    shapes = []
    hook = imported.region_encoder.register_forward_hook(lambda m, i, o: shapes.extend(list(t.shape) for t in o))
    try:
        out = imported(synth.reference_input())  # fed as is: the reference logits were computed unnormalised
    finally:
        hook.remove()
    logits, expected = out["classification"], torch.tensor(ref["logits"])
    assert logits.shape == expected.shape == (1, ref["num_classes"])
    max_abs, rel = float((logits - expected).abs().max()), _rel(logits, expected)
    print(f"reference logits: max abs err {max_abs:.2e}, relative L2 err {rel:.2e}")
    assert rel < 1e-4 and max_abs < 1e-4
    assert shapes == ref["region_feature_shapes"]
    assert sum(p.numel() for p in imported.parameters()) == ref["params"]


def test_imported_config(imported):
    c = imported.config
    assert (c.region_encoder, c.region_size, c.sub_region_size) == ("swinv2_tiny", 512, 256)
    assert c.context_encoder == "hyper"
    assert c.context_encoder_kwargs == dict(hidden=768, layers=2, heads=6, mlp_ratio=4.0)
    assert c.heads == {"classification": {"num_classes": 284}}
    assert imported.tokens_per_region == 256 and not imported.training


def test_unwrapping(released):
    plain = unwrap_state_dict(released)
    assert plain.keys() == released.keys()
    for wrapped in ({"state_dict": released}, {k: v for k, v in released.items()},
                    {"state_dict": {f"module.{k}": v for k, v in released.items()}, "epoch": 1},
                    {f"module.model.{k}": v for k, v in released.items()},
                    {"model": {f"model.{k}": v for k, v in released.items()}}):
        out = unwrap_state_dict(wrapped)
        assert out.keys() == released.keys() and all(out[k] is released[k] for k in out)


@pytest.mark.parametrize("variant", ["bare", "module"])
def test_file_variants(variant, released, imported, tmp_path):
    state = released if variant == "bare" else {f"module.{k}": v for k, v in released.items()}
    path = tmp_path / f"{variant}.pth"
    torch.save(state, path)
    model = import_xt_checkpoint(path)
    ours, theirs = model.state_dict(), imported.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def _released_shapes(encoder: str, num_classes: int = 284, hidden: int = 768, layers: int = 2) -> dict:
    """A released-style state dict (meta tensors) for any Swin-V2 size: timm's keys + the Hyper decoder's."""
    import timm

    from napari_xt.model.encoders.catalogue import TIMM_ENCODERS

    with torch.device("meta"):
        swin = timm.create_model(TIMM_ENCODERS[encoder][0], features_only=True, pretrained=False)
    state = {f"encoder.model.{k}": v for k, v in swin.state_dict().items()}
    c_out = swin.feature_info.channels()[-1]
    meta = lambda *s: torch.empty(*s, device="meta")
    state.update({"decoder.cls_token": meta(1, 1, hidden), "decoder.input_proj.weight": meta(hidden, c_out),
                  "decoder.input_proj.bias": meta(hidden), "decoder.cls.0.weight": meta(hidden),
                  "decoder.cls.0.bias": meta(hidden), "decoder.cls.1.weight": meta(num_classes, hidden),
                  "decoder.cls.1.bias": meta(num_classes)})
    for i in range(layers):
        p = f"decoder.layers.{i}."
        state.update({p + "attn.qkv.weight": meta(3 * hidden, hidden), p + "attn.qkv.bias": meta(3 * hidden),
                      p + "attn.proj.weight": meta(hidden, hidden), p + "attn.proj.bias": meta(hidden),
                      p + "input_layernorm.weight": meta(hidden), p + "post_attention_layernorm.weight": meta(hidden),
                      p + "mlp.gate_proj.weight": meta(4 * hidden, hidden),
                      p + "mlp.up_proj.weight": meta(4 * hidden, hidden),
                      p + "mlp.down_proj.weight": meta(hidden, 4 * hidden)})
    return state


@pytest.mark.parametrize("encoder, millions, exact", [
    ("swinv2_tiny", 47.27, 47_271_494), ("swinv2_small", 68.65, None),
    ("swinv2_base", 106.78, None), ("swinv2_large", 215.48, None),
])
def test_param_counts_match_reference(encoder, millions, exact):
    state = _released_shapes(encoder)
    config = infer_config(state)
    assert config.region_encoder == encoder
    with torch.device("meta"):
        model = build_model(config, pretrained=False)
    assert set(model.state_dict()) == {map_key(k) for k in state}
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == millions
    if exact is not None:
        assert n == exact


def test_unknown_key_is_named(released):
    state = dict(released)
    state["decoder.extra_head.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match=r"decoder\.extra_head\.weight"):
        import_xt_state_dict(state)


def test_shape_mismatch_is_named(released):
    state = dict(released)
    state["decoder.layers.1.attn.proj.bias"] = torch.zeros(5)
    with pytest.raises(CheckpointError, match=r"decoder\.layers\.1\.attn\.proj\.bias \(5,\)"):
        import_xt_state_dict(state)


def test_missing_key_is_named(released):
    state = {k: v for k, v in released.items() if k != "encoder.model.layers_2.blocks.3.mlp.fc1.bias"}
    with pytest.raises(CheckpointError, match=r"layers_2\.blocks\.3\.mlp\.fc1\.bias"):
        import_xt_state_dict(state)


def test_mamba_checkpoint_is_refused_with_reason(released):
    state = {k: v for k, v in released.items() if not k.startswith("decoder.layers")}
    state["decoder.layers.0.mixer.in_proj.weight"] = torch.zeros(3072, 768)
    state["decoder.layers.0.norm.weight"] = torch.zeros(768)
    with pytest.raises(CheckpointError, match="Mamba"):
        import_xt_state_dict(state)


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, self.arg


@pytest.mark.parametrize("how", ["system", "exec"])
def test_malicious_pickle_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    if how == "system":
        payload = _Evil(os.system, (f"echo pwned > '{marker}'",))
    else:
        payload = _Evil(exec, (f"open({str(marker)!r}, 'w').close()",))
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"encoder.model.patch_embed.proj.bias": torch.zeros(96)}, "hook": payload}, path)
    with pytest.raises(CheckpointError, match="refused"):
        import_xt_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(path)  # the generic loader goes through the same importer
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable"):
        import_xt_checkpoint(junk)
    listed = tmp_path / "list.ckpt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(CheckpointError, match="no state dict"):
        import_xt_checkpoint(listed)
    with pytest.raises(CheckpointError, match="no such file"):
        import_xt_checkpoint(tmp_path / "missing.ckpt")


def test_convert_round_trip(ckpt, imported, tmp_path):
    out = convert_xt(ckpt, tmp_path / "model", image_size=512, region_size=256)
    assert out.suffix == ".safetensors" and out.is_file()
    loaded = load_model(out)
    assert isinstance(loaded, XTModel) and loaded.config.to_dict() == imported.config.to_dict()
    a, b = loaded.state_dict(), imported.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert XTConfig.from_dict(loaded.config.to_dict()).region_size == 512


def test_convert_xt_command_line(ckpt, imported, synth, tmp_path, capsys):
    from napari_xt.cli import main
    from napari_xt.model import load_model

    out = tmp_path / "cli.safetensors"
    assert main(["convert-xt", str(ckpt), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    reloaded = load_model(out)
    x = synth.reference_input()
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x)["classification"], imported(x)["classification"])


def test_convert_xt_bad_file_is_one_line_error(tmp_path, capsys):
    from napari_xt.cli import main

    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"definitely not a torch file")
    assert main(["convert-xt", str(bad), "--out", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert "broken.ckpt" in err and "\n" not in err
    assert not (tmp_path / "x.safetensors").exists()
