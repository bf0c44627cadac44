"""One registry for every swappable xT part, in the spirit of timm's ``register_model``.

Each part kind (region encoder, context encoder, head) maps a name to a builder function. The dock's combo boxes,
``napari-xt --help`` and the parametrised tests all read these tables, so a variant registered here is listed and
tested everywhere the day it is added.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRIES: dict[str, dict[str, Callable[..., Any]]] = {
    "region_encoder": {},
    "context_encoder": {},
    "head": {},
}


class UnknownComponentError(KeyError):
    """A name that no registered builder answers to; the message lists what is available."""

    def __str__(self) -> str:  # KeyError quotes its message; we want a plain sentence.
        return str(self.args[0])


def _register(kind: str, name: str | None = None) -> Callable[[F], F]:
    def decorator(fn: F) -> F:
        key = name or fn.__name__
        table = _REGISTRIES[kind]
        if key in table and table[key] is not fn:
            raise ValueError(f"{kind} {key!r} is already registered")
        table[key] = fn
        return fn

    return decorator


def _list(kind: str, pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRIES[kind] if fnmatch.fnmatch(n, pattern))


def _get(kind: str, name: str) -> Callable[..., Any]:
    try:
        return _REGISTRIES[kind][name]
    except KeyError:
        known = ", ".join(_list(kind)) or "none"
        raise UnknownComponentError(
            f"unknown {kind.replace('_', ' ')} {name!r}; registered: {known}"
        ) from None


def register_region_encoder(name: str | None = None) -> Callable[[F], F]:
    """Decorator: record a region-encoder builder under ``name`` (default: the function name)."""
    return _register("region_encoder", name)


def register_context_encoder(name: str | None = None) -> Callable[[F], F]:
    """Decorator: record a context-encoder builder under ``name`` (default: the function name)."""
    return _register("context_encoder", name)


def register_head(name: str | None = None) -> Callable[[F], F]:
    """Decorator: record a task-head builder under ``name`` (default: the function name)."""
    return _register("head", name)


def list_region_encoders(pattern: str = "*") -> list[str]:
    return _list("region_encoder", pattern)


def list_context_encoders(pattern: str = "*") -> list[str]:
    return _list("context_encoder", pattern)


def list_heads(pattern: str = "*") -> list[str]:
    return _list("head", pattern)


def get_region_encoder_builder(name: str) -> Callable[..., Any]:
    return _get("region_encoder", name)


def get_context_encoder_builder(name: str) -> Callable[..., Any]:
    return _get("context_encoder", name)


def get_head_builder(name: str) -> Callable[..., Any]:
    return _get("head", name)
