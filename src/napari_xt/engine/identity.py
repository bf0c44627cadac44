"""Identities that guard a result store: which model, which image, which plan made it.

A resumed run or a batch re-run continues a store only when all three match, so a store is never completed by a
different model or over a different image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..io import LargeImage
    from ..model import XTModel


def image_fingerprint(image: LargeImage) -> str:
    """Cheap identity of an image: path name, level shapes, dtype and the bytes of its smallest level's corner."""
    h = hashlib.sha256()
    h.update(Path(str(image.path)).name.encode())
    h.update(json.dumps([list(lvl.shape) for lvl in image.levels]).encode())
    h.update(str(image.levels[0].dtype).encode())
    low = image.levels[-1]
    h.update(bytes(memoryview(low[:64, :64].compute().copy())))
    return h.hexdigest()[:16]


def model_checksum(model: XTModel) -> str:
    """Identity of a model: its config and a digest of its weights (so two random inits differ)."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        flat = tensor.detach().float().flatten()
        h.update(flat[:: max(1, flat.numel() // 64)].cpu().numpy().tobytes())
    return h.hexdigest()[:16]
