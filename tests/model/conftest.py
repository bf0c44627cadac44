"""Fixtures for the model tests: an offline hub cache holding tiny ViTs (see vit_weights.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from vit_weights import TINY_VITS, tiny_vit_state, write_weights


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Callable[..., Path]:
    """An empty hub cache under ``HF_HOME`` with ``HF_HUB_OFFLINE=1``; call it to add ``org/name`` with a tiny ViT.

    Returns the path of the weights file written into the snapshot.
    """
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("NAPARI_XT_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def add(repo: str, kind: str = "vit16", seed: int = 0, filename: str = "model.safetensors",
            config: bool = True) -> Path:
        org, name = repo.split("/")
        root = home / "hub" / f"models--{org}--{name}"
        rev = "0123456789abcdef0123456789abcdef01234567"
        snap = root / "snapshots" / rev
        snap.mkdir(parents=True)
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(rev)
        arch, args = TINY_VITS[kind]
        if config:
            (snap / "config.json").write_text(json.dumps({
                "architecture": arch, "num_classes": 0, "model_args": args,
                "pretrained_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                                   "input_size": [3, args["img_size"], args["img_size"]]}}))
        return write_weights(snap / filename, tiny_vit_state(kind, seed))

    return add
