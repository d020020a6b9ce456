"""``fisher``: the support is chosen before training, the top ``target_density`` of the accumulated
squared gradients (a diagonal Fisher) over the first ``fisher_frames`` training structures (Sung et
al. 2021); the part is compacted so that only the support has a parameter and optimiser state."""

from __future__ import annotations

from ..._compat import torch
from ..ranking import block_groups, keep_top
from .base import SparseMode


class Fisher(SparseMode):
    name = "fisher"

    def frames_needed(self) -> int:
        return 0 if all(p.fixed for p in self.parts) else self.config.fisher_frames

    def prepare(self, batches, forward_loss, frames: int, log=print, seed: int = 0) -> bool:
        if all(p.fixed for p in self.parts):
            return False
        sums = fisher_scores(self.parts, batches, forward_loss)
        masks = keep_top(
            [sums[p] for p in self.parts],
            self.plan.target,
            groups=block_groups(self.parts),
            allocation=self.config.allocation,
        )
        for part, keep in zip(self.parts, masks):
            part.compact(keep)
        kept = sum(int(p.delta.numel()) for p in self.parts)
        log(
            f"{self.config.name}: support fixed before training from squared gradients over {frames} structures "
            f"({kept} entries, density {self.plan.target})"
        )
        return True


def fisher_scores(parts, batches, forward_loss) -> dict:
    """Accumulated squared gradients of the loss w.r.t. each part's delta over ``batches``."""
    sums = {p: torch.zeros_like(p.delta) for p in parts}
    params = [p.delta for p in parts]
    for batch in batches:
        for p in params:
            p.grad = None
        forward_loss(batch).backward()
        for p in parts:
            if p.delta.grad is not None:
                sums[p] += p.delta.grad.detach() ** 2
    for p in params:
        p.grad = None
    return sums
