"""Fixing the support of prunable parts: keep the top fraction of entries (or those above a
threshold) of each adapter, by magnitude or by expected loss increase."""

from __future__ import annotations

from .._compat import torch
from .base import PrunablePart
from .ranking import block_groups, keep_top


def _magnitudes(parts: list[PrunablePart], curvature: dict | None) -> torch.Tensor:
    if curvature is None:
        return torch.cat([p.delta.detach().abs().reshape(-1) for p in parts])
    return torch.cat(
        [(p.delta.detach() ** 2 * curvature.get(p.delta, torch.ones_like(p.delta))).reshape(-1) for p in parts]
    )


@torch.no_grad()
def fix_support(
    groups: list[list[PrunablePart]],
    *,
    density: float | None = None,
    threshold: float | None = None,
    curvature: dict | None = None,
    allocation: str | list[str] = "global",
) -> int:
    """Fix the support of each group (one adapter's parts): its top ``density`` fraction of
    entries, or the entries with ``|delta| > threshold``. Returns entries kept.

    Entries are ranked by ``|delta|``, or, when ``curvature`` maps a part's delta parameter
    to a per-entry curvature estimate (e.g. Adam's ``exp_avg_sq``, a diagonal Fisher), by
    ``curvature * delta**2``: the loss increase expected from resetting that entry; the top
    fraction is chosen by :func:`sparseft.adapters.ranking.keep_top` with ``allocation`` (one for all
    groups, or one per group)."""
    if (density is None) == (threshold is None):
        raise ValueError("fix_support needs exactly one of density= or threshold=")
    allocations = [allocation] * len(groups) if isinstance(allocation, str) else list(allocation)
    kept = 0
    for parts, alloc in zip(groups, allocations):
        if density is not None:
            magnitudes = _magnitudes(parts, curvature)
            keep = torch.cat(keep_top([magnitudes], density, groups=[torch.cat(block_groups(parts))], allocation=alloc))
        else:
            keep = _magnitudes(parts, None) > threshold
        start = 0
        for p in parts:
            n = p.delta.numel()
            p.set_mask(keep[start : start + n])
            start += n
        kept += int(keep.sum())
    return kept
