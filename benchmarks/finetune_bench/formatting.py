"""Number formatting for the report tables: meV from eV, percentages, byte sizes."""

from __future__ import annotations


def fmt(v, scale=1000.0, spec=".1f"):
    return "-" if v is None else format(v * scale, spec)


def pct(v, digits=2):
    if v is None:
        return "-"
    return f"{100 * v:.{digits}f}%" if v >= 0.0001 else f"{100 * v:.1g}%"


def human_bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
