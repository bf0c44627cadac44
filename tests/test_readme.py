"""The README is where a new user learns what napari-xt can run: it must list every page of the documentation and
say what the encoder catalogue offers (issue 23: it still named only Swin-V2/ConvNeXt/Hiera and missed encoders.md)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def test_every_documentation_page_is_listed():
    listed = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", _readme()))
    pages = {f"docs/{p.name}" for p in (REPO / "docs").glob("*.md")}
    assert pages - listed == set()


def test_the_encoder_paragraph_says_what_the_catalogue_offers():
    from napari_xt.app.catalog import ENCODER_GROUPS

    intro = _readme().split("## Quick start")[0]
    for group in ENCODER_GROUPS[:2]:  # pathology, remote sensing: the foundation models users come for
        assert re.search(group.replace(" ", "[ -]") + " (foundation models|ones)", intro), group
    for words in ("UNI", "Virchow2", "SSL4EO", "DINOv2", "`timm:<name>`", "`hf-hub:<org>/<repo>`",
                  "docs/encoders.md"):
        assert words in intro, words


def test_the_layout_section_matches_the_folders():
    """Every package of src/napari_xt (and the model's encoders) is in the README's layout, and nothing else is."""
    layout = _readme().split("## Layout")[1].split("```")[1]
    listed = set(re.findall(r"^ {2,4}(\w+)/", layout, flags=re.M))
    src = REPO / "src" / "napari_xt"
    packages = {p.parent.name for p in src.glob("*/__init__.py")} | {"encoders"}
    assert listed == packages
    assert (src / "model" / "encoders" / "__init__.py").is_file()
