"""One way a command gets its configuration: dataclass fields -> flags, and layered defaults.

A config dataclass declares each field with :func:`opt` (default, help, flag group). Then:

- :func:`add_config_arguments` generates the flags from the fields (type, default, help), so no
  command hand-mirrors its config;
- :func:`layer_defaults` follows timm's ``_parse_args``: presets and the ``--config`` file become
  ``parser.set_defaults(**layer)``, then ``ngl.cli.main`` parses the command line again, so
  precedence is plain: flag > file > preset > dataclass default;
- :func:`from_mapping` builds the dataclass from a dict (file, flags, checkpoint), refusing
  unknown keys (naming close matches) and wrongly typed values with one line.

>>> from dataclasses import dataclass
>>> @dataclass
... class Demo:
...     epochs: int = opt(20, "training epochs")
>>> from_mapping(Demo, {"epochs": 3})
Demo(epochs=3)
>>> from_mapping(Demo, {"epochs": True})
Traceback (most recent call last):
...
ngl.errors.InputTypeError: Demo.epochs must be int, got True (bool)
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import InputError, InputTypeError

__all__ = ["opt", "add_config_arguments", "layer_defaults", "from_mapping", "check_value",
           "comma_list", "HelpParser"]

_MISSING = dataclasses.MISSING


def opt(default: Any = _MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
        group: str | None = None, flag: bool = True, metavar: str | None = None,
        choices: Callable[[], list[str]] | None = None) -> Any:
    """A dataclass field with its CLI description (``metadata``: help, group, flag, choices)."""
    meta = {"help": help, "group": group, "flag": flag, "metavar": metavar, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class HelpParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose epilog may be computed when help is printed (``epilog_fn``), so a
    catalogue that needs heavy imports (datasets, models, losses) costs nothing until ``--help``."""

    def __init__(self, *args: Any, epilog_fn: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog_fn = epilog_fn

    def format_help(self) -> str:
        if self.epilog_fn is not None:
            self.epilog, self.epilog_fn = self.epilog_fn(), None
        return super().format_help()


def comma_list(kind: type) -> Callable[[str], list]:
    """argparse ``type`` for comma-separated values (``"0,1,2"`` -> ``[0, 1, 2]``).

    Only top-level commas split: a comma inside ``()``, ``[]`` or ``{}`` belongs to its item, so the
    infixes the search prints stay whole. For text values, a comma inside a path is kept too: when
    items joined with their commas name an existing file or folder (after a ``name:`` prefix such
    as ``npz:`` or ``folder:``), they are one item; the longest existing join wins (up to 16 items).

    >>> comma_list(str)("ce,expr:max(p, y) - y * log(p),ngl")
    ['ce', 'expr:max(p, y) - y * log(p)', 'ngl']
    >>> comma_list(int)("0, 1,2")
    [0, 1, 2]
    """
    def parse(text: str) -> list:
        parts = _top_level_split(text)
        if kind is str:
            parts = _rejoin_paths(parts)
        try:
            return [kind(t.strip()) for t in parts if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values, got {text!r}") from None
    parse.__name__ = f"list of {kind.__name__}"
    return parse


def _top_level_split(text: str) -> list[str]:
    """``text`` split at the commas outside any bracket pair."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def _names_a_path(text: str) -> bool:
    text = text.strip()
    head, sep, rest = text.partition(":")
    try:
        return Path(rest if sep and head.isidentifier() else text).exists()
    except (OSError, ValueError):                 # a name too long, a NUL byte
        return False


def _rejoin_paths(parts: list[str], *, window: int = 16) -> list[str]:
    out, i = [], 0
    while i < len(parts):
        j = next((j for j in range(min(len(parts), i + window), i + 1, -1)
                  if _names_a_path(",".join(parts[i:j]))), i + 1)
        out.append(",".join(parts[i:j]))
        i = j
    return out


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _flag_kwargs(tp: Any) -> dict[str, Any]:
    base, _ = _strip_optional(tp)
    origin = typing.get_origin(base) or base
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin in (list, tuple):
        item = (typing.get_args(base) or (str,))[0]
        return {"type": comma_list(item if item in (int, float, str) else str)}
    if origin is dict:
        return {"type": json.loads, "metavar": "JSON"}
    return {"type": base if base in (int, float, str) else str}


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, *,
                         skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
                         defaults: Mapping[str, Any] | None = None, prefix: str = "",
                         group: str | None = None, groups: dict[str, Any] | None = None) -> None:
    """Add ``--<prefix>field-name`` for every field of ``cls`` declared with ``flag=True``.

    Fields go into argument groups by their ``group`` metadata (created on first use, or taken
    from ``groups``; ``group`` puts them all in one); help shows the default unless it is ``None``
    or empty. ``only`` keeps just those fields; ``defaults`` replaces the dataclass's defaults
    (``None``: "the layer's"), so one dataclass serves several commands without a mirror of its
    fields. With ``prefix`` the destination is ``<prefix>field`` too (``transfer_`` ->
    ``--transfer-epochs``, ``args.transfer_epochs``).
    """
    hints = typing.get_type_hints(cls)
    groups = groups if groups is not None else {}
    defaults = defaults or {}
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if f.name in skip or not meta.get("flag", False) or (only is not None and f.name not in only):
            continue
        title = group or meta.get("group") or "options"
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        kwargs = _flag_kwargs(hints[f.name])
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else None)
        default = defaults.get(f.name, default)
        text = meta.get("help", "")
        if default not in (None, "", [], (), {}) and "default" not in text:
            shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            text = f"{text} (default: {shown})".replace("%", "%%")
        else:
            text = text.replace("%", "%%")
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]()
        dest = prefix + f.name
        groups[title].add_argument("--" + dest.replace("_", "-"), dest=dest, default=default,
                                   help=text, **kwargs)


def layer_defaults(parser: argparse.ArgumentParser, layers: list[Mapping[str, Any]]) -> None:
    """Set each layer (lowest precedence first) as ``parser``'s defaults; parse again afterwards.

    Every key of a layer must be a destination of ``parser``, else a one-line error naming the
    closest one. Flags on the command line still win over every layer. ``ngl.cli.main`` calls this
    with what a subcommand's ``layers(args)`` returns (its preset, then its ``--config`` file).
    """
    dests = {a.dest for a in parser._actions}   # noqa: SLF001 - argparse has no public accessor
    for layer in layers:
        unknown = sorted(set(layer) - dests)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(dests), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown setting {unknown[0]!r}{hint}")
        parser.set_defaults(**layer)


def check_value(owner: str, name: str, tp: Any, value: Any) -> Any:
    """``value`` if it fits the annotation ``tp`` (int for float allowed; bool is never a number;
    NaN and infinities are refused), else :class:`InputTypeError` naming ``owner.name``."""
    base, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise InputTypeError(f"{owner}.{name} must be {_name(base)}, got None")
    origin = typing.get_origin(base) or base
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        str: lambda v: isinstance(v, str),
        dict: lambda v: isinstance(v, dict),
        list: lambda v: isinstance(v, (list, tuple)),
        tuple: lambda v: isinstance(v, (list, tuple)),
    }.get(origin, lambda v: True)
    if not ok(value):
        raise InputTypeError(f"{owner}.{name} must be {_name(base)}, got {value!r} "
                             f"({type(value).__name__})")
    if origin in (list, tuple) and typing.get_args(base):
        item = typing.get_args(base)[0]
        value = type(value)(check_value(owner, f"{name}[{i}]", item, v) for i, v in enumerate(value))
    return float(value) if origin is float else value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def from_mapping(cls: type, data: Mapping[str, Any], *, what: str | None = None) -> Any:
    """``cls(**data)`` after refusing unknown keys (with close matches) and wrongly typed values."""
    what = what or cls.__name__
    if not isinstance(data, Mapping):
        raise InputTypeError(f"{what} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"unknown {what} key {key!r}{hint}")
    return cls(**{k: check_value(cls.__name__, k, hints[k], v) for k, v in data.items()})
