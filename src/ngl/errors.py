"""ngl's own error types: what a user did wrong, as opposed to a bug.

The CLI catches :class:`UserError` (and only it) and prints one line, exit status 2; any other
exception is a bug and keeps its traceback. Each subclass also derives from the builtin a library
user would catch (``ValueError``, ``TypeError``, ``FileNotFoundError``, ``KeyError``,
``ImportError``), so ``except ValueError`` keeps working in user code.

>>> try:
...     raise InputError("labels out of range: got 12, expected 0..9")
... except ValueError as exc:
...     print(one_line(exc))
labels out of range: got 12, expected 0..9
"""
from __future__ import annotations

import importlib

__all__ = ["UserError", "InputError", "InputTypeError", "MissingFileError", "UnknownNameError",
           "MissingExtraError", "one_line", "require_extra"]


class UserError(Exception):
    """Base of every error caused by the user's input: one line, exit status 2 in the CLI."""


class InputError(UserError, ValueError):
    """A value, shape, file content or setting that is not what was expected."""


class InputTypeError(UserError, TypeError):
    """A value of the wrong type (a string where a number was expected, float labels, ...)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user must provide is not there; the message names the path and where to get it."""


class UnknownNameError(UserError, KeyError):
    """An unknown registry name; the message lists close matches."""

    def __str__(self) -> str:          # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def one_line(exc: BaseException, *, limit: int = 500) -> str:
    """An exception as one line: its message with newlines folded, prefixed by its type when the
    message alone would not say what went wrong; cut at ``limit`` characters."""
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and not isinstance(exc, UnknownNameError) \
        and exc.args else str(exc)
    msg = " ".join(msg.split())
    if not isinstance(exc, UserError):
        msg = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def require_extra(module: str, extra: str, *, what: str):
    """Import ``module`` or raise :class:`MissingExtraError` naming the pip extra that brings it.

    >>> require_extra("json", "dev", what="the test")  # doctest: +ELLIPSIS
    <module 'json' from ...>
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise
        raise MissingExtraError(
            f"{what} needs the optional package {top!r}: "
            f"pip install 'next-generation-loss[{extra}]'") from None
