"""``napari-xt download NAME``: fetch a region encoder's pretrained weights into the hub cache (progress bar).

After it, the encoder builds offline (``HF_HUB_OFFLINE=1``) from the cache. Gated weights need a token
(``HF_TOKEN`` or ``hf auth login``) and the terms accepted on the model's hub page; the error says so.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("download", help="download a region encoder's pretrained weights into the hub cache",
                       description="Fetch the pretrained weights of a catalogue encoder, timm:NAME or "
                                   "hf-hub:ORG/REPO into the Hugging Face cache (HF_HOME; HF_ENDPOINT and HF_TOKEN "
                                   "are honoured), so later runs work offline.")
    p.add_argument("name", metavar="NAME", help="encoder: catalogue name (see `napari-xt models --kind encoder`), "
                                                "timm:NAME or hf-hub:ORG/REPO")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import WeightsUnavailable
    from ..model import encoders
    from ..model.weights import HubWeights, PackageWeights, download, resolve_weights

    name = str(args.name)
    if name.startswith(("hf-hub:", "hf_hub:")):
        repo = name.split(":", 1)[1]
        download(name, HubWeights(repo, files=("config.json",)))  # the architecture, for offline builds
        hub: HubWeights | PackageWeights | None = HubWeights(repo)
    else:
        hub = encoders.weights_source(name)
    if hub is None:
        raise WeightsUnavailable(name, "none", "nothing to download (train it with --random-init)")
    # package weights come with their package: nothing to download, only to find (or to install)
    path = resolve_weights(name, hub) if isinstance(hub, PackageWeights) else download(name, hub)
    print(f"{name}: {path}")
    return 0
