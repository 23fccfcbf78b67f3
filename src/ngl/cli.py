"""The ``ngl`` command line. Each subcommand lives in ``ngl.commands.<name>`` and exposes
``register(subparsers)`` (adds its parser, sets ``func``); this table is the only place they meet."""
from __future__ import annotations

import argparse
import importlib
import sys

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


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ngl",
        description="The Next Generation Loss toolkit: losses, training, the paper's evaluation "
                    "protocol and the GP search for new losses.",
        epilog="Run 'ngl <command> --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:       # that command is not built yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UserError, ValueError, KeyError, FileNotFoundError, TypeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"ngl {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
