"""``napari-xt`` command line: one entry point, one small module per sub-command, the same engine as the widget.

Exit codes: 0 success, 1 the input could not be processed (unreadable image, incompatible checkpoint), 2 bad
arguments (argparse), 130 interrupted. Errors are one line on stderr, never a traceback, unless ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from .._compat import keep_triton_out_without_cuda
from . import _convert, _demo, _download, _export, _info, _models, _predict, _sample, _suggest, _train, _verify

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_COMMANDS = (_demo, _info, _models, _download, _predict, _suggest, _train, _sample, _convert, _export, _verify)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-xt",
        description="Run xT models over gigapixel slides and SAR scenes (napari plugin + CLI).",
    )
    parser.add_argument("--version", action="version", version=f"napari-xt {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    keep_triton_out_without_cuda()  # before any command imports timm (napari-xt demo opens a viewer first)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("napari-xt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # every failure becomes one readable line
        if args.debug:
            raise
        print(f"napari-xt {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(err: BaseException) -> str:
    from ._errors import describe

    return describe(err)


