"""Selectors: which weight blocks an adapter touches.

Filters combine with AND. ``l`` and ``parity`` test a block's *output* irrep (blocks
without one, e.g. hidden radial-MLP layers, never match an ``l``/``parity`` filter);
``elements`` keeps only per-element blocks of those elements; ``include``/``exclude``
are shell globs on block names (``sparseft inspect`` prints them).

Tiny string syntax, for the command line::

    kinds=skip,contraction layers=1 l=0,1 parity=e elements=O,H exclude=*bias*
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, fields

from ase.data import atomic_numbers as _SYMBOL_TO_Z
from ase.data import chemical_symbols

from .blocks import KINDS, WeightBlock


class SelectionError(ValueError):
    """A selector that is malformed or matches nothing."""


def _field_error(name: str, message: str) -> SelectionError:
    """An error about one filter; ``Selector.from_dict`` prefixes its recipe path."""
    exc = SelectionError(f"{name}: {message}")
    exc.field = name
    return exc


def _int(name: str, value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise _field_error(name, f"expected integers, got {value!r}")


def _z(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    if isinstance(value, str) and value in _SYMBOL_TO_Z:
        return _SYMBOL_TO_Z[value]
    raise _field_error("elements", f"unknown element {value!r} (use a chemical symbol such as O or an atomic number)")


@dataclass(frozen=True)
class Selector:
    """Which blocks to pick; every filter left as None accepts everything."""

    layers: tuple[int, ...] | None = None
    kinds: tuple[str, ...] | None = None
    l: tuple[int, ...] | None = None  # noqa: E741
    parity: tuple[str, ...] | None = None
    elements: tuple[int, ...] | None = None
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (str, int)):
                value = (value,)
            if value is not None:
                if not isinstance(value, (list, tuple)):
                    raise _field_error(f.name, f"expected a list, got {type(value).__name__} ({value!r})")
                value = tuple(value)
            object.__setattr__(self, f.name, value)
        if self.exclude is None:
            object.__setattr__(self, "exclude", ())
        for name in ("layers", "l"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(_int(name, x) for x in getattr(self, name)))
        if self.elements is not None:
            object.__setattr__(self, "elements", tuple(_z(x) for x in self.elements))
        for name in ("kinds", "parity", "include", "exclude"):
            bad = [x for x in getattr(self, name) or () if not isinstance(x, str)]
            if bad:
                raise _field_error(name, f"expected strings, got {bad}")
        if self.kinds is not None:
            bad = [k for k in self.kinds if k not in KINDS]
            if bad:
                raise _field_error("kinds", f"unknown kind(s) {bad}; valid kinds: {', '.join(KINDS)}")
        if self.parity is not None:
            bad = [p for p in self.parity if p not in ("e", "o")]
            if bad:
                raise _field_error("parity", f"parity must be 'e' or 'o', not {bad}")

    @classmethod
    def parse(cls, text: str) -> "Selector":
        """Parse ``"kinds=skip,linear layers=0 l=1"`` (empty string or ``all``: everything)."""
        text = (text or "").strip()
        if text in ("", "all", "*"):
            return cls()
        values: dict[str, list[str]] = {}
        names = {f.name for f in fields(cls)}
        for token in text.replace(";", " ").split():
            if "=" not in token:
                raise SelectionError(f"selector term {token!r} must look like key=value[,value]")
            key, _, raw = token.partition("=")
            key = {"layer": "layers", "kind": "kinds", "element": "elements"}.get(key, key)
            if key not in names:
                raise SelectionError(f"unknown selector key {key!r}; valid keys: {', '.join(sorted(names))}")
            values.setdefault(key, []).extend(v for v in raw.split(",") if v)
        try:
            return cls(**values)
        except SelectionError as exc:
            raise SelectionError(f"selector '{text}': {exc}") from exc

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "select") -> "Selector":
        """Build from a recipe mapping; unknown keys raise an error naming ``where``."""
        if data is None:
            return cls()
        if isinstance(data, str):
            return cls.parse(data)
        if not isinstance(data, dict):
            raise SelectionError(f"{where}: expected a mapping of filters, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SelectionError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(names))}")
        try:
            return cls(**data)
        except SelectionError as exc:
            raise SelectionError(f"{where}.{exc}" if getattr(exc, "field", None) else f"{where}: {exc}") from exc

    def to_dict(self) -> dict:
        """Only the filters that are set, as JSON-friendly lists."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value != ():
                out[f.name] = list(value)
        return out

    def __str__(self) -> str:
        shown = self.to_dict()
        if "elements" in shown:
            shown["elements"] = [chemical_symbols[z] for z in shown["elements"]]
        parts = [f"{k}={','.join(map(str, v))}" for k, v in shown.items()]
        return " ".join(parts) or "all"

    def matches(self, block: WeightBlock) -> bool:
        """True when ``block`` passes every filter."""
        return all(test(block) for _, test in self._tests())

    def _tests(self):
        """(filter name, test) pairs for the filters that are set."""
        tests = []
        if self.layers is not None:
            tests.append(("layers", lambda b: b.layer in self.layers))
        if self.kinds is not None:
            tests.append(("kinds", lambda b: b.kind in self.kinds))
        if self.l is not None:
            tests.append(("l", lambda b: b.l in self.l))
        if self.parity is not None:
            tests.append(("parity", lambda b: b.parity in self.parity))
        if self.elements is not None:
            tests.append(("elements", lambda b: b.element in self.elements))
        if self.include is not None:
            tests.append(("include", lambda b: any(_glob(b, g) for g in self.include)))
        if self.exclude:
            tests.append(("exclude", lambda b: not any(_glob(b, g) for g in self.exclude)))
        return tests

    def resolve(self, all_blocks: list[WeightBlock]) -> list[WeightBlock]:
        """The matching blocks; a selector matching nothing raises with what exists."""
        chosen = list(all_blocks)
        trail = []
        for name, test in self._tests():
            chosen = [b for b in chosen if test(b)]
            trail.append(f"{name} -> {len(chosen)}")
            if not chosen:
                raise SelectionError(
                    f"selector '{self}' matches no block (after {', '.join(trail)}). {describe(all_blocks)}"
                )
        return chosen


def _glob(block: WeightBlock, pattern: str) -> bool:
    return fnmatch.fnmatchcase(block.name, pattern) or fnmatch.fnmatchcase(block.param, pattern)


def describe(all_blocks: list[WeightBlock]) -> str:
    """One line listing the layers, kinds, l, parities and elements that exist."""
    layers = sorted({b.layer for b in all_blocks if b.layer is not None})
    kinds = [k for k in KINDS if any(b.kind == k for b in all_blocks)]
    ls = sorted({b.l for b in all_blocks if b.l is not None})
    parities = sorted({b.parity for b in all_blocks if b.parity is not None})
    elements = sorted({b.element for b in all_blocks if b.element is not None})
    symbols = [chemical_symbols[z] for z in elements]
    return (
        f"The model has layers {layers}; kinds {kinds}; l {ls}; parity {parities}; elements {symbols}. "
        "`sparseft inspect MODEL` lists every block."
    )
