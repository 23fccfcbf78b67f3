"""The ``ngl`` command line. Each subcommand lives in ``ngl.commands.<name>`` and exposes
``register(subparsers)`` (adds its parser, sets ``func``); this table is the only place they meet.

A subcommand whose configuration comes in layers sets ``layers=fn`` and ``parser=<its parser>``
with ``set_defaults``: ``fn(args)`` returns the layers (preset, then ``--config`` file), which
become the parser's defaults before the command line is parsed again (see ``ngl.config``), so a
flag always wins. Only :class:`ngl.errors.UserError` is a user error (one line, exit 2); any other
exception is a bug and keeps its traceback.

Building the parser imports no optional package: a command whose registration needs one that is
not installed (``ngl search`` needs ``deap``) still appears, and running it is the one-line
"pip install 'next-generation-loss[extra]'" error (exit 2).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .config import HelpParser, layer_defaults
from .errors import MissingExtraError, UserError, one_line

__all__ = ["main", "COMMANDS", "EXTRAS", "build_parser", "parse", "given_on_command_line"]

#: subcommand -> module; the module's ``register(subparsers)`` builds the parser.
COMMANDS = {
    "losses": "ngl.commands.losses",
    "demo": "ngl.commands.demo",
    "train": "ngl.commands.train",
    "bench": "ngl.commands.bench",
    "report": "ngl.commands.report",
    "search": "ngl.commands.search",
}


#: optional top-level package -> the pip extra that installs it
EXTRAS = {"deap": "search", "cma": "search", "ray": "ray", "keras": "keras", "tensorflow": "tf",
          "jax": "jax"}


def _register(sub: argparse._SubParsersAction, name: str, module: str) -> None:
    """``module.register(sub)``, or a stand-in parser when an optional package is missing."""
    try:
        importlib.import_module(module).register(sub)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in EXTRAS:
            raise
        message = (f"'ngl {name}' needs the optional package {top!r}: "
                   f"pip install 'next-generation-loss[{EXTRAS[top]}]'")

        def unavailable(args: argparse.Namespace) -> int:
            raise MissingExtraError(message)

        # no option prefix: every argument (--help included) is taken as is, then the one line
        p = sub.add_parser(name, help=f"(not installed: {message})", add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)
        p.set_defaults(func=unavailable)


def build_parser() -> argparse.ArgumentParser:
    parser = HelpParser(
        prog="ngl",
        description="The Next Generation Loss toolkit: losses, training, the paper's evaluation "
                    "protocol and the GP search for new losses.",
        epilog="Run 'ngl <command> --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True,
                                parser_class=HelpParser)
    for name, module in COMMANDS.items():
        _register(sub, name, module)
    return parser


class _Unset(list):
    """Marks a destination the command line did not set (a list, so ``append`` actions work)."""


def given_on_command_line(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of ``parser`` that ``argv`` (the subcommand's arguments) sets explicitly,
    even to their default value.

    >>> p = argparse.ArgumentParser()
    >>> _ = p.add_argument("--epochs", type=int, default=20)
    >>> _ = p.add_argument("--lr", type=float, default=0.1)
    >>> sorted(given_on_command_line(p, ["--epochs", "20"]))
    ['epochs']
    """
    unset = {a.dest: _Unset() for a in parser._actions  # noqa: SLF001 - no public accessor
             if a.dest != argparse.SUPPRESS}
    ns = argparse.Namespace(**unset)
    parser.parse_known_args(argv, namespace=ns)
    return {k for k, v in vars(ns).items() if not (v is unset.get(k) or (type(v) is _Unset and not v))}


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, apply the subcommand's layers (if any) as defaults, and parse again.

    ``args.given`` is the set of the subcommand's destinations named on the command line (so a
    command can tell a flag from a layer, e.g. which grid axes the user chose)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    sub_parser = getattr(args, "parser", None)
    given: set[str] = set()
    if sub_parser is not None and args.command in argv:
        given = given_on_command_line(sub_parser, argv[argv.index(args.command) + 1:])
    args.given = given
    layers = getattr(args, "layers", None)
    if layers is not None:
        layer_defaults(sub_parser, layers(args))
        args = parser.parse_args(argv)
        args.given = given
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    command = next((f"ngl {w}" for w in words if w in COMMANDS), "ngl")
    try:
        args = parse(parser, argv)
        command = f"ngl {args.command}"
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserError as exc:
        lines = getattr(exc, "problems", None)      # several problems: one line each (DatasetsMissingError)
        print(f"{command}: error: {str(exc) if lines else one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
