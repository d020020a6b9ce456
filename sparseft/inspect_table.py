"""Text tables of the weight catalogue for ``sparseft inspect``."""

from __future__ import annotations

from collections import OrderedDict

from ase.data import chemical_symbols

from .blocks import WeightBlock


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """Plain aligned text table; ``align`` is one 'l'/'r' per column (default: left)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    align = align or "l" * len(headers)

    def line(values):
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _irreps(b: WeightBlock) -> str:
    if b.irrep_in and b.irrep_out:
        return f"{b.irrep_in}->{b.irrep_out}"
    return b.irrep_out or b.irrep_in or "-"


def _element(b: WeightBlock) -> str:
    return chemical_symbols[b.element] if b.element is not None else "-"


def _group_key(b: WeightBlock, by: str):
    if by == "kind":
        return (b.kind,)
    if by == "layer":
        return ("-" if b.layer is None else b.layer, b.kind)
    if by == "param":
        return (b.param, b.kind)
    if by == "element":
        return (_element(b), b.kind)
    raise ValueError(f"--group must be one of block, kind, layer, param, element (got {by!r})")


def catalogue_table(blocks: list[WeightBlock], total: int, by: str = "block") -> str:
    """One row per block (``by="block"``) or per group, with weight counts and shares of ``total``."""
    if by == "block":
        rows = [
            [
                b.name,
                b.kind,
                "-" if b.layer is None else b.layer,
                _irreps(b),
                _element(b),
                "x".join(map(str, b.shape)),
                b.size,
                f"{100 * b.size / total:.2f}%",
            ]
            for b in blocks
        ]
        return format_table(
            ["block", "kind", "layer", "irreps", "element", "shape", "count", "share"], rows, "llrllrrr"
        )
    groups: "OrderedDict[tuple, list[WeightBlock]]" = OrderedDict()
    for b in blocks:
        groups.setdefault(_group_key(b, by), []).append(b)
    headers = {
        "kind": ["kind"],
        "layer": ["layer", "kind"],
        "param": ["parameter", "kind"],
        "element": ["element", "kind"],
    }[by]
    rows = []
    for key, members in groups.items():
        count = sum(b.size for b in members)
        rows.append(list(key) + [len(members), count, f"{100 * count / total:.2f}%"])
    return format_table(headers + ["blocks", "count", "share"], rows, "l" * len(headers) + "rrr")
