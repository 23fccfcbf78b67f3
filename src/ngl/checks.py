"""Hyperparameter checks shared by the PyTorch and the Keras losses (torch- and Keras-free).

Each returns the value (as ``float`` for numbers) or raises :class:`~ngl.errors.InputError` with one
line naming the hyperparameter, what was expected and what was given.

>>> check_positive("gamma", 2)
2.0
>>> check_number("alpha", float("nan"))
Traceback (most recent call last):
...
ngl.errors.InputError: alpha must be a finite number, got nan
"""
from __future__ import annotations

from typing import Any, Callable

from .errors import InputError

__all__ = ["check_positive", "check_finite", "check_range", "check_bool", "check_int",
           "check_number", "optional"]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)
    if not (ok and value == value and value != float("inf")):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_finite(name: str, value: float) -> float:
    """A finite number (not a bool), as ``float``."""
    return check_number(name, value)


def check_range(name: str, value: float, lo: float, hi: float) -> float:
    if not (_is_number(value) and lo <= value <= hi):
        raise InputError(f"{name} must lie in [{lo}, {hi}], got {value!r}")
    return float(value)


def check_bool(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def check_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    return value


def optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """A check that also accepts None."""
    return lambda name, value: None if value is None else check(name, value)


def check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a float, refusing bools, NaN, infinities and values outside ``[low, high]``
    (:class:`~ngl.errors.InputError`, a ``ValueError``, for all of them, as before)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or \
            abs(value) == float("inf") or (low is not None and value < low) or \
            (high is not None and value > high):
        bounds = f" in [{low}, {high}]" if high is not None else f" >= {low}" if low is not None else ""
        raise InputError(f"{name} must be a finite number{bounds}, got {value!r}")
    return float(value)
