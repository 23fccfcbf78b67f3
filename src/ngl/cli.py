"""The ``ngl`` command line. Each subcommand lives in ``ngl.commands.<name>`` and exposes
``register(subparsers)`` (adds its parser, sets ``func``); this table is the only place they meet.

A subcommand whose configuration comes in layers sets ``layers=fn`` and ``parser=<its parser>``
with ``set_defaults``: ``fn(args)`` returns the layers (preset, then ``--config`` file), which
become the parser's defaults before the command line is parsed again (see ``ngl.config``), so a
flag always wins. Only :class:`ngl.errors.UserError` is a user error (one line, exit 2); any other
exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .config import layer_defaults
from .errors import UserError, one_line

__all__ = ["main", "COMMANDS"]

#: subcommand -> module; the module's ``register(subparsers)`` builds the parser.
COMMANDS = {
    "losses": "ngl.commands.losses",
    "demo": "ngl.commands.demo",
    "train": "ngl.commands.train",
    "bench": "ngl.commands.bench",
    "report": "ngl.commands.report",
    "search": "ngl.commands.search",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ngl",
        description="The Next Generation Loss toolkit: losses, training, the paper's evaluation "
                    "protocol and the GP search for new losses.",
        epilog="Run 'ngl <command> --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).register(sub)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, apply the subcommand's layers (if any) as defaults, and parse again."""
    args = parser.parse_args(argv)
    layers = getattr(args, "layers", None)
    if layers is not None:
        layer_defaults(args.parser, layers(args))
        args = parser.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    command = "ngl"
    try:
        args = parse(parser, argv)
        command = f"ngl {args.command}"
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"{command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
