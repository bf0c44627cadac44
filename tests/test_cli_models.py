"""``napari-xt models``: the zoo listed as text and JSON; ``--help`` texts name the zoo without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from napari_xt.cli import _models, main
from napari_xt.model.zoo import KINDS, list_entries


def test_models_json_lists_every_kind(capsys):
    assert main(["models", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in found] == [e.name for e in list_entries()]
    assert {e["kind"] for e in found} == {"demo", "preset", "encoder"}
    demo = next(e for e in found if e["name"] == "demo-tissue")
    assert demo["weights"] == {"kind": "shipped", "ref": "demo_tissue.safetensors", "available": True}
    assert demo["licence"] and demo["gated"] is False and demo["config"]["name"] == "demo-tissue"


def test_models_kind_filter(capsys):
    assert main(["models", "--kind", "encoder", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found and {e["kind"] for e in found} == {"encoder"}
    assert main(["models", "--kind", "imported", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(SystemExit):
        main(["models", "--kind", "nonsense"])


def test_models_text_grouped_by_kind(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    heads = [out.index(title) for title in ("Demo models", "Presets", "Region encoders", "Imported checkpoints")]
    assert heads == sorted(heads)
    for text in ("demo-tissue", "licence: BSD-3-Clause", "swinv2_tiny", "licence: MIT", "not gated",
                 "napari-xt train --region-encoder NAME", "none registered"):
        assert text in out


def test_cli_kinds_match_the_zoo():
    assert _models.KINDS == KINDS


def test_help_names_the_zoo(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "demo-tissue" in out and "tiny-hyper-seg" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "swinv2_tiny" in out and "hiera_base" in out and "demo-sar" in out


def test_building_the_parser_does_not_import_torch():
    code = ("import sys; from napari_xt.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

