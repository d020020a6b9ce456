"""Queries over finished runs: the best setting of a family by validation error, and runs
grouped into learning curves."""

from __future__ import annotations


def best_of(results: list[dict], family: str) -> dict | None:
    rows = [r for r in results if r.get("status") == "ok" and r["family"] == family and r["tool"] == "sparseft"]
    return min(rows, key=lambda r: r["valid"]["forces_mae"]) if rows else None


def lc_groups(info: dict) -> dict:
    groups = {}
    rows = [
        r for r in info["main"] + info["lc"] if r.get("status") == "ok" and r["method"] in info.get("lc_methods", [])
    ]
    for r in rows:
        groups.setdefault(r["method"], {}).setdefault(r["n_train"], []).append(r)
    return groups
