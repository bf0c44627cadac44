"""``napari-xt models``: the model zoo (demo models, presets, region encoders, imported checkpoints) as text or JSON.

Also :func:`zoo_help`, the help text of ``--model``/``--base``/``--region-encoder`` flags naming what the zoo holds,
rendered only when ``--help`` is printed: building the parser must not import torch (the zoo lives in ``model/``).
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

#: The zoo's kinds in listing order (``napari_xt.model.zoo.KINDS``; repeated so the parser needs no torch import).
KINDS = ("demo", "preset", "encoder", "imported")
_TITLES = {
    "demo": "Demo models (trained weights shipped with napari-xt, on synthetic images: they show how it works)",
    "preset": "Presets (random weights: for trying the tool and for tests)",
    "encoder": "Region encoders (not models: train one with `napari-xt train --region-encoder NAME ...`)",
    "imported": "Imported checkpoints (released xT files given a name in the zoo)",
}
_EMPTY = {"imported": "none registered; convert a released xT checkpoint with `napari-xt convert-xt CKPT --out M`, "
                      "or pass its file to --model"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="list the model zoo: demo models, presets and region encoders",
                       description="The named models and region encoders napari-xt knows: what each is, where its "
                                   "weights come from, their licence and whether they are gated. Model names go to "
                                   "`predict --model` and `train --base`; encoder names to `train --region-encoder`.")
    p.add_argument("--kind", choices=KINDS, help="only this kind")
    p.add_argument("--json", action="store_true", help="print a JSON list of entries instead of text")
    p.set_defaults(run=run)


def entries(kind: str | None = None) -> list[dict[str, Any]]:
    """The zoo's entries as JSON-ready dicts (imports torch through the model package)."""
    from ..model.zoo import list_entries

    found = [e.to_dict() for e in list_entries(kind)]  # type: ignore[arg-type]  # argparse checked the choice
    for e in found:
        e["weight_state"] = weight_state(e)
    return found


def weight_state(entry: Mapping[str, Any]) -> str:
    """``shipped``/``random`` for models; for encoders ``cached``, ``folder``, ``downloadable``, ``needs a token``,
    ``missing`` or ``none``, from the hub cache and weights folder only (no network)."""
    if entry["kind"] != "encoder":
        return {"shipped": "shipped", "random": "random"}.get(entry["weights"]["kind"],
                                                              "file" if entry["weights"]["available"] else "missing")
    from ..app.catalog import encoder_weight_state

    return encoder_weight_state(entry["name"])  # the same answer the dock's encoder picker shows


def run(args: argparse.Namespace) -> int:
    found = entries(args.kind)
    if args.json:
        print(json.dumps(found))
        return 0
    print(format_text(found, [args.kind] if args.kind else list(KINDS)))
    return 0


def format_text(found: list[dict[str, Any]], kinds: list[str]) -> str:
    """Entries grouped by kind: name, description, then weights / licence / gated on a second line."""
    lines: list[str] = []
    for kind in kinds:
        group = [e for e in found if e["kind"] == kind]
        if lines:
            lines.append("")
        lines.append(_TITLES[kind])
        if not group:
            lines.append(f"  {_EMPTY.get(kind, 'none')}")
            continue
        width = max(len(e["name"]) for e in group)
        for e in group:
            lines += textwrap.wrap(e["description"], 118, initial_indent=f"  {e['name']:<{width}}  ",
                                   subsequent_indent=" " * (width + 4))
            gated = {True: "gated (needs a hub token)", None: "may be gated (may need a hub token)"}.get(
                e["gated"], "not gated")
            licence = e["licence"] or "-"
            state = f" [{e['weight_state']}]" if e.get("weight_state") and e["kind"] == "encoder" else ""
            lines.append(f"  {'':<{width}}  weights: {_weights(e['weights'])}{state}; licence: {licence}; {gated}")
    return "\n".join(lines)


def _weights(source: Mapping[str, Any]) -> str:
    ref, missing = source["ref"], "" if source["available"] else " (MISSING)"
    return {"shipped": f"shipped file {ref}{missing}", "random": "random init", "timm": f"timm {ref}",
            "hub": f"hub {ref}", "file": f"file {ref}{missing}"}.get(source["kind"], source["kind"])


class _LazyHelp(str):
    """A help string argparse expands (``help % params``) only when it prints help: then the zoo is read.

    (Python 3.14's ``add_argument`` test-expands help strings; there this renders at parser build, still correct.)
    """

    render: Callable[[], str]

    def __mod__(self, params: Any) -> str:
        return self.render().replace("%", "%%") % params


def zoo_help(template: str, *kinds: str) -> str:
    """Help text naming the zoo's entries of ``kinds``, rendered lazily: ``{names}`` in ``template`` becomes
    ``demo-tissue, demo-sar, tiny-hyper-seg, ...`` when help is printed (``see `napari-xt models` `` if the zoo cannot
    be read)."""

    def render() -> str:
        try:
            from ..model.zoo import list_entries

            names = [e.name for k in kinds for e in list_entries(k) if e.available]  # type: ignore[arg-type]
            text = ", ".join(names) or "none"
        except Exception:  # a broken install must still print --help
            text = "see `napari-xt models`"
        return template.format(names=text)

    help_text = _LazyHelp(template.format(names="..."))
    help_text.render = render
    return help_text
