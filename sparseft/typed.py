"""One type checker for the YAML-shaped inputs: recipe sections and head entries (numbers
through :func:`sparseft.ranges.as_number`)."""

from __future__ import annotations

import types
import typing

from .ranges import as_number


def check_type(value, annotation, where: str, error: type[Exception] = ValueError):
    """``value`` checked against a simple annotation (float, int, str, bool, list of names, dict,
    None, unions of them; anything else passes), ints accepted for floats and numeric strings
    (YAML 1.1 reads 1e-3 as a string) for floats; a mismatch raises ``error`` naming ``where``."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        if len(options) == 1:  # Optional[X] with a value: X's own message ("expected a number")
            return check_type(value, options[0], where, error)
        errors = []
        for option in typing.get_args(hint):
            try:
                return check_type(value, option, where, error)
            except error as exc:
                errors.append(str(exc))
        names = " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
        raise error(f"{where}: expected {names}, got {type(value).__name__} ({value!r})")
    if hint is type(None):
        if value is not None:
            raise error(f"{where}: expected null")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (float, int):  # floats must be finite; YAML 1.1 reads 1e-3 (no dot) as a string
        return as_number(value, hint, where, error)
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{where}: expected a string, got {type(value).__name__} ({value!r})")
        return value
    if hint is list:  # lists in recipes are lists of file names
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise error(f"{where}: expected a non-empty list of file names, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a mapping, got {type(value).__name__}")
        return value
    return value
