"""Typed errors every layer raises and only the edges word: ``cli/`` for a terminal, ``widget/`` for the dock.

Each error carries the facts as fields (the store path, the channel counts, the names that exist) and a neutral
sentence as its ``str`` (for logs and for library users). The CLI adds flag advice (``--resume``, ``--out``), the dock
adds button advice (Resume, Results store); neither rewrites messages by substring.

This module is a leaf: no torch, no Qt, no other napari_xt import, so ``io/``, ``model/`` and ``engine/`` (below
``app/``) can raise these while ``app/`` re-exports them as the public set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class XTError(ValueError):
    """A problem with the user's input or files (not a bug): one sentence, no traceback at the edges.

    A ``ValueError`` so code written against the earlier plain ``ValueError`` contract keeps working.
    """


class StoreError(XTError):
    """A result store that cannot be made, opened or written; the message names the store."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class StoreExists(StoreError):
    """``path`` is taken: by a result store (``is_store``), or by something else that is never deleted."""

    def __init__(self, path: str | Path, what: str, is_store: bool):
        super().__init__(f"{path} already exists ({what})", path)
        self.what, self.is_store = what, is_store


class NotAStore(StoreExists):
    """Asked to replace ``path``, but it is not a napari-xt result store: refused even when overwriting."""

    def __init__(self, path: str | Path, what: str):
        StoreError.__init__(self, f"{path} exists and is not a napari-xt result store ({what}); it is never deleted",
                            path)
        self.what, self.is_store = what, False


class StoreMismatch(StoreError):
    """Resuming a store made by another model, image or plan; ``problems`` lists what differs."""

    def __init__(self, path: str | Path, problems: Sequence[str]):
        super().__init__(f"store {path} was made with {' and with '.join(problems)}", path)
        self.problems = list(problems)


class StoreDamaged(StoreError):
    """A result store whose files lost data or contradict its own metadata: an interrupted copy or sync, a full disk,
    a cloud folder that never downloaded a file, an edit, another release.

    ``part`` names what is damaged (``zarr.json``, ``labels/0``, ``detections/table``), ``regions`` the done regions
    whose results it spoils (empty when not known), ``fix`` how it is mended: ``resume`` (resuming the run clears
    and redoes those regions), ``verify`` (resuming with the deep check, which decodes every chunk, finds and redoes
    them) or ``remake`` (the store's own metadata is lost: it must be made again). The edges add the flag or button.
    """

    FIXES = {"resume": "resuming the run repairs it", "verify": "resuming the run with a deep check repairs it",
             "remake": "it must be made again"}

    def __init__(self, path: str | Path, part: str, problem: str, regions: Sequence[int] = (), fix: str = "resume"):
        self.part, self.problem, self.fix = part, problem, fix
        self.regions = tuple(sorted({int(r) for r in regions}))
        n = len(self.regions)
        shown = ", ".join(str(r) for r in self.regions[:8]) + (", ..." if n > 8 else "")
        spoils = f" ({n} region{'s' if n != 1 else ''}: {shown})" if n else ""
        where = f"{part}: " if part else ""
        super().__init__(f"store {path} is damaged: {where}{problem}{spoils}; {self.FIXES.get(fix, fix)}", path)


class ImageError(XTError):
    """An image that cannot be analysed as asked; ``image`` names it (a batch has hundreds)."""

    def __init__(self, message: str, image: str = ""):
        super().__init__(f"{image}: {message}" if image else message)
        self.image, self.reason = image, message


class ChannelMismatch(ImageError):
    """The model wants ``expected`` input channels; the image has ``found``."""

    def __init__(self, expected: int, found: int, image: str = "", kind: str = ""):
        what = f" ({kind})" if kind else ""
        super().__init__(f"the model expects {expected} channel(s) but the image has {found}{what}: pick a model made "
                         "for this kind of image", image)
        self.expected, self.found, self.kind = expected, found, kind


class PlanError(XTError):
    """The requested plan cannot be made (bad ROI, level out of range, no pixel size, ...).

    ``option`` names the plan option at fault (``level``, ``mpp``, ``roi``, ``overlap``, ...) so the CLI can name its
    flag and the dock its field.
    """

    def __init__(self, message: str, option: str = ""):
        super().__init__(message)
        self.option = option


class DeviceUnavailable(XTError):
    """An explicit device (``cuda:1``, ``mps``) or precision this machine cannot run."""

    def __init__(self, message: str, device: str = ""):
        super().__init__(message)
        self.device = device


class UnknownModel(XTError):
    """A model name that is neither a zoo entry nor a file; ``known`` maps each kind to its names."""

    def __init__(self, name: str, known: dict[str, list[str]] | None = None, message: str = ""):
        self.name, self.known = name, dict(known or {})
        if not message:
            listed = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in self.known.items() if names)
            message = f"{name!r} is neither a model file nor a known model" + (f" ({listed})" if listed else "")
        super().__init__(message)


class EncoderIsNotAModel(UnknownModel):
    """A region-encoder name given where a whole model (encoder + context + heads, trained) is needed."""

    def __init__(self, name: str, known: dict[str, list[str]] | None = None):
        super().__init__(name, known, f"{name!r} is a region encoder, not a model: build and train a model from it "
                                      f"with `napari-xt train --region-encoder {name} ...`, or pick a model")


class OutputError(XTError):
    """An output path (checkpoint, export) that is refused: wrong suffix, exists without overwrite, ..."""

    def __init__(self, message: str, path: str | Path | None = None, exists: bool = False):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.exists = exists


class CheckpointError(XTError):
    """A model file that cannot be read, or does not match the model it describes; the message says how.

    ``path`` names the file when one is at fault (``None`` for an in-memory state dict).
    """

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class WeightsUnavailable(XTError):
    """Pretrained weights for ``encoder`` were asked for but cannot be had here; ``fix`` says how to get them.

    ``reason`` is one of ``offline`` (nothing cached, hub unreachable or ``HF_HUB_OFFLINE``), ``gated`` (the hub wants
    a token / accepted terms), ``missing`` (no such repo or file), ``none`` (the encoder has no pretrained weights).
    Never answered with a silent random init: the caller asks for ``--random-init`` explicitly.
    """

    def __init__(self, encoder: str, reason: str, fix: str, detail: str = ""):
        why = {"offline": "they are not cached and the hub cannot be reached",
               "gated": "the hub requires an access token and accepted terms for them",
               "missing": "the hub has no such weights",
               "none": "this encoder has no pretrained weights",
               "not installed": "the package that ships them is not installed"}.get(reason, reason)
        extra = f" ({detail})" if detail else ""
        super().__init__(f"pretrained weights for {encoder!r} are unavailable: {why}{extra}; {fix}")
        self.encoder, self.reason, self.fix = encoder, reason, fix


class GeoDependencyMissing(XTError):
    """A georeferenced feature (map coordinates, GeoTIFF/GeoPackage export, GIS vectors) without the optional geo
    libraries; ``module`` names the one missing. Slides never need them, so they are an extra, not a dependency."""

    def __init__(self, what: str, module: str):
        super().__init__(f"{what} needs the optional geo libraries ({module} is not installed): "
                         "pip install 'napari-xt[geo]'")
        self.what, self.module = what, module
