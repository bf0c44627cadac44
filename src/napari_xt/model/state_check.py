"""A state dict checked against a model, key by key: what the checkpoint loaders and the encoder weights share.

A leaf below both the checkpoint format (:mod:`._format`, :mod:`.xt_import`) and the region encoders' weight loading
(:mod:`.encoders.loading`), so neither side imports the other to check a file: every missing, unexpected or
mis-shaped key is named in one sentence, and nothing is ever half-loaded.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import CheckpointError


def short_list(names: list[str], limit: int = 8) -> str:
    """``a, b, c (+5 more)``: the first ``limit`` names of a long list."""
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def problems(*groups: tuple[str, Sequence[str]]) -> list[str]:
    """``label: a, b (+n more)`` for each ``(label, names)`` group that names any, in the order given."""
    return [f"{label}: {short_list(list(names))}" for label, names in groups if names]


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` naming missing/unexpected keys and shape mismatches between ``state`` and ``model``."""
    expected = model.state_dict()
    found = problems(
        ("missing keys", sorted(set(expected) - set(state))),
        ("unexpected keys", sorted(set(state) - set(expected))),
        ("shape mismatches", sorted(f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                                    for k in set(state) & set(expected) if state[k].shape != expected[k].shape)),
    )
    if found:
        raise CheckpointError(f"{source} does not match the model its config builds; " + "; ".join(found))


__all__ = ["check_state_dict", "problems", "short_list"]
