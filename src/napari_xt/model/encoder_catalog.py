"""Old home of the foundation-model catalogue, kept for code that imports it: see
:mod:`napari_xt.model.encoders.catalogue` (the one catalogue of every region encoder)."""

from __future__ import annotations

from .encoders.catalogue import CATALOGUE, PROV_GIGAPATH_LICENCE, SSL4EO_S2_FILES, SSL4EO_S2_NORM

__all__ = ["CATALOGUE", "PROV_GIGAPATH_LICENCE", "SSL4EO_S2_FILES", "SSL4EO_S2_NORM"]
