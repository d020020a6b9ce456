"""Declared value ranges and number checks for config dataclasses.

A numeric field declares its range where it is defined,
``lr: float = field(default=1e-3, metadata=ranged(gt=0))``, and the reader of that config
(recipe sections, adapter configs) checks it with :func:`check_field` when the value is read,
so the message names the recipe path (``train.lr: must be > 0, got -1``).
"""

from __future__ import annotations

import math
import operator

_TESTS = {"gt": (">", operator.gt), "ge": (">=", operator.ge), "lt": ("<", operator.lt), "le": ("<=", operator.le)}


def ranged(**bounds: float) -> dict:
    """Field metadata declaring a range: any of ``gt``, ``ge``, ``lt``, ``le``."""
    unknown = set(bounds) - set(_TESTS)
    if unknown:
        raise TypeError(f"unknown bound(s) {sorted(unknown)}; use gt, ge, lt, le")
    return {"range": bounds}


def describe(bounds: dict) -> str:
    """``{"ge": 0, "lt": 1}`` -> ``">= 0 and < 1"``."""
    return " and ".join(f"{_TESTS[name][0]} {bound:g}" for name, bound in bounds.items())


def check_range(value, bounds: dict, where: str, error=ValueError) -> None:
    """Raise ``error`` naming ``where`` unless ``value`` (a number or None) is within ``bounds``;
    NaN is outside every range."""
    if value is None or not bounds:
        return
    for name, bound in bounds.items():
        if not _TESTS[name][1](value, bound):
            raise error(f"{where}: must be {describe(bounds)}, got {value!r}")


def check_field(field, value, where: str, error=ValueError) -> None:
    """Check ``value`` against the range a dataclass ``field`` declares (if any)."""
    check_range(value, field.metadata.get("range", {}), where, error)


def as_number(value, kind: type, where: str, error=ValueError):
    """``value`` as an ``int`` (no bools, no floats) or a finite ``float`` (ints and numeric
    strings such as YAML 1.1's ``1e-3`` accepted); raises ``error`` naming ``where``."""
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where}: expected an integer, got {type(value).__name__} ({value!r})")
        return value
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{where}: expected a number, got {type(value).__name__} ({value!r})")
    if not math.isfinite(value):
        raise error(f"{where}: expected a finite number, got {value!r}")
    return float(value)
