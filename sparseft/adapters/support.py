"""Fixing the support of prunable parts: keep the top fraction of entries (or those above a
threshold) of each adapter, by magnitude or by expected loss increase."""

from __future__ import annotations

from .._compat import torch
from .base import PrunablePart


def _magnitudes(parts: list[PrunablePart], curvature: dict | None) -> torch.Tensor:
    if curvature is None:
        return torch.cat([p.delta.detach().abs().reshape(-1) for p in parts])
    return torch.cat(
        [(p.delta.detach() ** 2 * curvature.get(p.delta, torch.ones_like(p.delta))).reshape(-1) for p in parts]
    )


def _top_k(magnitudes: torch.Tensor, density: float) -> torch.Tensor:
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    k = max(1, int(round(density * magnitudes.numel())))
    cut = torch.topk(magnitudes, k).values[-1]
    keep = magnitudes >= cut
    if keep.sum() > k:  # ties: keep exactly k
        order = torch.argsort(magnitudes, descending=True)[:k]
        keep = torch.zeros_like(keep)
        keep[order] = True
    return keep


@torch.no_grad()
def fix_support(
    groups: list[list[PrunablePart]],
    *,
    density: float | None = None,
    threshold: float | None = None,
    curvature: dict | None = None,
) -> int:
    """Fix the support of each group (one adapter's parts): its top ``density`` fraction of
    entries, or the entries with ``|delta| > threshold``. Returns entries kept.

    Entries are ranked by ``|delta|``, or, when ``curvature`` maps a part's delta parameter
    to a per-entry curvature estimate (e.g. Adam's ``exp_avg_sq``, a diagonal Fisher), by
    ``curvature * delta**2``: the loss increase expected from resetting that entry."""
    if (density is None) == (threshold is None):
        raise ValueError("fix_support needs exactly one of density= or threshold=")
    kept = 0
    for parts in groups:
        if density is not None:
            keep = _top_k(_magnitudes(parts, curvature), density)
        else:
            keep = _magnitudes(parts, None) > threshold
        start = 0
        for p in parts:
            n = p.delta.numel()
            p.set_mask(keep[start : start + n])
            start += n
        kept += int(keep.sum())
    return kept
