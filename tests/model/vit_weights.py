"""Offline weights for encoder tests: tiny timm ViTs written to files (the hub-cache fixture is in conftest.py).

The hub layout is huggingface_hub's own (``HF_HOME/hub/models--ORG--NAME/snapshots/REV/<file>`` + ``refs/main``), so
the code under test resolves it through ``huggingface_hub.try_to_load_from_cache`` exactly as it would a real
download. ``HF_HUB_OFFLINE=1`` makes any attempt to reach the network an error rather than a wait.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Tiny plain ViTs (ms to build and run on a CPU): patch 16 with a class token, patch 14 with 4 registers, patch 8.
TINY_VITS: dict[str, tuple[str, dict]] = {
    "vit16": ("vit_small_patch16_224", {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64}),
    "vit14reg": ("vit_small_patch14_reg4_dinov2", {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 224}),
    "vit8": ("vit_small_patch8_224", {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64}),
}


def tiny_vit_state(kind: str, seed: int = 0, in_chans: int = 3) -> dict[str, torch.Tensor]:
    """A random-init state dict of a tiny timm ViT, as a hub file would hold it (no classifier)."""
    import timm

    torch.manual_seed(seed)
    arch, args = TINY_VITS[kind]
    model = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=in_chans, **args)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_weights(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """``.safetensors`` via safetensors, anything else via ``torch.save`` (a plain dict of tensors)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
