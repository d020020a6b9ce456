"""The one support-ranking function: every place that chooses which delta entries to keep (fixing a
support by density, the cuts of ``gradual``, the fix step of every mode, ``fisher``'s up-front
choice, the offsets of ``str_scheduled``) asks :func:`keep_top`.

Rules, the same everywhere:

- exactly ``round(density * n)`` entries are kept (at least 1), ``n`` counting every entry of the
  adapter;
- ties are broken by position (the earlier entry wins), independent of torch's ``topk``/``argsort``
  (a stable sort on the descending score, done with numpy's ``lexsort`` on the CPU);
- ``-inf`` and NaN scores rank last (a pruned entry stays pruned as long as enough others remain);
- ``allocation``: ``global`` ranks the scores of the whole adapter against each other (one top-k);
  ``per_block`` gives each weight block (``groups``) its ``density`` share: the entries are ranked by
  their rank inside their block divided by the block's size, so each block keeps about
  ``density x its size`` of its best entries and at least one (when ``k`` is at least the number of
  blocks) - a small block such as a readout is not starved by the large ones.
"""

from __future__ import annotations

import numpy as np

from .._compat import torch

ALLOCATIONS = ("global", "per_block")


def check_allocation(allocation: str, where: str = "allocation") -> None:
    if allocation not in ALLOCATIONS:
        raise ValueError(f"{where}: {allocation!r} is not one of {', '.join(ALLOCATIONS)}")


def budget(density: float, n: int) -> int:
    """The number of entries a ``density`` keeps of ``n``: ``round(density * n)``, at least 1."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    return min(n, max(1, int(round(density * n))))


def order(
    scores: list[torch.Tensor], *, groups: list[torch.Tensor] | None = None, allocation: str = "global"
) -> np.ndarray:
    """Positions in the joined ``scores``, best first (see the module notes)."""
    check_allocation(allocation)
    joined = np.concatenate([s.detach().reshape(-1).to("cpu", torch.float64).numpy() for s in scores])
    joined = np.where(np.isnan(joined), -np.inf, joined)
    position = np.arange(joined.size)
    if allocation == "global" or groups is None:
        return np.lexsort((position, -joined))  # the last key is the primary one
    group = np.concatenate([g.reshape(-1).to("cpu", torch.int64).numpy() for g in groups])
    if group.size != joined.size:
        raise ValueError(f"groups cover {group.size} entries, scores {joined.size}")
    within = np.lexsort((position, -joined, group))  # by block, best first inside each block
    rank = np.empty(joined.size, dtype=np.int64)
    _, starts, sizes = np.unique(group[within], return_index=True, return_counts=True)
    first = np.repeat(starts, sizes)
    rank[within] = np.arange(joined.size) - first
    size = np.empty(joined.size, dtype=np.int64)
    size[within] = np.repeat(sizes, sizes)
    key = rank / size
    key = np.where(np.isneginf(joined), np.inf, key)  # excluded entries last, in every block
    return np.lexsort((position, -joined, key))


def keep_top(
    scores: list[torch.Tensor],
    density: float,
    *,
    groups: list[torch.Tensor] | None = None,
    allocation: str = "global",
) -> list[torch.Tensor]:
    """Bool masks (one per ``scores`` tensor, same device) keeping exactly ``round(density * n)``
    (at least 1) entries of the joined scores: the highest (``global``) or each block's share of its
    highest (``per_block``, block ids per entry in ``groups``)."""
    n = sum(int(s.numel()) for s in scores)
    if n == 0:
        return [torch.zeros(s.shape, dtype=torch.bool, device=s.device) for s in scores]
    k = budget(density, n)
    chosen = order(scores, groups=groups, allocation=allocation)[:k]
    keep = np.zeros(n, dtype=bool)
    keep[chosen] = True
    out, start = [], 0
    for s in scores:
        out.append(torch.from_numpy(keep[start : start + s.numel()].copy()).reshape(s.shape).to(s.device))
        start += s.numel()
    return out


def block_groups(parts) -> list[torch.Tensor]:
    """Per-entry block ids of ``parts`` (one adapter's parts, in order): every weight block its own
    group, numbered across the parts; for ``per_block`` allocation."""
    out, offset = [], 0
    for p in parts:
        sizes = torch.tensor([b.size for b in p.blocks], dtype=torch.long)
        ids = torch.repeat_interleave(torch.arange(len(p.blocks)) + offset, sizes)
        support = getattr(p, "support", None)
        out.append(ids[support.cpu()] if support is not None else ids)
        offset += len(p.blocks)
    return out
