"""Which model, image and region plan made a store: the three checksums that guard it.

A resumed run or a batch re-run continues a store only when all three match, so a store is never completed by a
different model or over a different image. The checksums are computed by the engine
(:func:`napari_xt.engine.identity.model_checksum`, :func:`~napari_xt.engine.identity.image_fingerprint`,
``Plan.checksum``) and kept in the store's metadata under :data:`IDENTITY_KEYS`; this module compares them, for
resume (:meth:`ResultStore.open_for_resume <napari_xt.store.results.ResultStore.open_for_resume>`) and for batch
runs alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The metadata keys of a store's identity, in the order differences are reported.
IDENTITY_KEYS = ("model_checksum", "image_fingerprint", "plan_checksum")
#: key -> (what it identifies, the metadata key naming it for people or "", what makes two plans differ).
_WHAT = {
    "model_checksum": ("model", "model", ""),
    "image_fingerprint": ("image", "image", ""),
    "plan_checksum": ("region plan", "", "level or pixel size, region size, overlap, context, ROI or mask"),
}


@dataclass(frozen=True)
class Mismatch:
    """One identity that differs: ``what`` (model, image, region plan), the checksum ``stored`` in the store and the
    one ``expected`` now, with the names people know them by (a model file, an image path) where there are any."""

    key: str
    what: str
    stored: str | None
    expected: str
    stored_name: str = ""
    expected_name: str = ""
    detail: str = ""  # what makes two of them differ (plans)

    def __str__(self) -> str:
        """``model seg.safetensors (checksum ab12), not other.safetensors (checksum cd34)``."""
        label = self.key.split("_")[-1]
        had = f"{self.stored_name} ({label} {self.stored})" if self.stored_name else f"{label} {self.stored}"
        now = f"{self.expected_name} ({label} {self.expected})" if self.expected_name else f"{label} {self.expected}"
        return f"{self.what} {had}, not {now}"

    def another(self) -> str:
        """``another region plan (level or pixel size, ...): checksum ab12 there, cd34 now`` (a batch re-run)."""
        detail = f" ({self.detail})" if self.detail else ""
        return f"another {self.what}{detail}: checksum {self.stored} there, {self.expected} now"


@dataclass(frozen=True)
class Identity:
    """A store's identity: the model, image and plan checksums (and, for messages only, the model and image names).

    An empty checksum is not compared (a caller that does not know it yet)."""

    model_checksum: str = ""
    image_fingerprint: str = ""
    plan_checksum: str = ""
    model: str = ""
    image: str = ""

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Identity:
        """The identity a store's metadata (or any mapping with :data:`IDENTITY_KEYS`) records."""
        text = {k: str(meta.get(k) or "") for k in (*IDENTITY_KEYS, "model", "image")}
        return cls(text["model_checksum"], text["image_fingerprint"], text["plan_checksum"], text["model"],
                   text["image"])

    def checksums(self) -> dict[str, str]:
        """The three checksums by metadata key (what a store's metadata holds)."""
        return {k: getattr(self, k) for k in IDENTITY_KEYS}

    def mismatches(self, stored: Mapping[str, Any]) -> list[Mismatch]:
        """The identities a store's metadata ``stored`` records otherwise than this one (none: it may be resumed)."""
        out = []
        for key in IDENTITY_KEYS:
            want, have = getattr(self, key), stored.get(key)
            if not want or want == have:
                continue
            what, name_key, detail = _WHAT[key]
            out.append(Mismatch(key, what, None if have is None else str(have), want,
                                str(stored.get(name_key) or "") if name_key else "",
                                getattr(self, name_key) if name_key else "", detail))
        return out


__all__ = ["IDENTITY_KEYS", "Identity", "Mismatch"]
