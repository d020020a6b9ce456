"""``str_scheduled`` (``str`` before 0.x): learnable soft thresholds on a forced density schedule:
``delta = sign(u) * relu(|u| - g)`` with ``g = exp(s_b + c)``, ``s_b`` learnable per block (trained
with ``threshold_lr_scale x lr``) and ``c`` a global offset set before each step so that the density
follows the cubic schedule of ``gradual`` to the target; ``u`` gets a straight-through gradient where
it is below the threshold (so zero entries can grow). The blocks compete for the density budget
through ``s_b``; at ``1 - retrain_fraction`` the support is fixed (the thresholded values become the
delta) and trained on with the optimiser state kept. See ``str`` for Cho et al.'s STR."""

from __future__ import annotations

import math

from ..._compat import torch
from ..ranking import budget, order
from ..sparse import ThresholdPart
from .base import OptimizerView, SparseMode, cubic_density


class STRScheduled(SparseMode):
    name = "str_scheduled"

    @classmethod
    def make_part(cls, config, blocks, dtype, device) -> ThresholdPart:
        return ThresholdPart(blocks, dtype, device, 0.0, cls.name)

    def before_step(self, step: int) -> None:
        if self.plan.fix_at_step is None:
            return
        set_offsets(self.parts, cubic_density(step, self.plan.prune_start, self.plan.fix_at_step, self.plan.target))

    def fix(self, optim: OptimizerView) -> None:
        open_parts = [p for p in self.parts if not p.fixed]
        if open_parts:
            set_offsets(open_parts, self.plan.target)
            # ranked by the thresholds' own score, so the kept entries are exactly those the offset
            # makes active plus the boundary entry (by |values| that entry, thresholded to ~0, tied
            # with the zeros: which one was kept followed rounding, and one rank vs two differed)
            self.keep(open_parts, [p.scores() for p in open_parts], self.plan.target)

    def param_options(self) -> dict:
        return {p.s: {"lr_scale": self.config.threshold_lr_scale} for p in self.parts if p.s.requires_grad}


@torch.no_grad()
def set_offsets(parts: list[ThresholdPart], density: float) -> None:
    """Set the global offset of ``parts`` (one adapter) so that a ``density`` fraction is active:
    midway between the scores of the last entry the ranking (:func:`~sparseft.adapters.ranking.order`)
    keeps and the first it does not; entries scoring above it are active. (At the first dropped
    entry's own score, that entry's threshold equals its size up to rounding, so whether it was
    active, and the thresholds' gradient with it, followed rounding: one rank and two diverged.)"""
    parts = [p for p in parts if not p.fixed]
    if not parts:
        return
    scores = [p.scores() for p in parts]
    n = sum(int(s.numel()) for s in scores)
    if density >= 1.0 or budget(density, n) >= n:
        offset = -math.inf
    else:
        joined = torch.cat([s.reshape(-1) for s in scores]).cpu()
        ranked = order(scores)
        k = budget(density, n)
        first_out, last_in = float(joined[int(ranked[k])]), float(joined[int(ranked[k - 1])])
        offset = 0.5 * (first_out + last_in) if math.isfinite(first_out) and math.isfinite(last_in) else first_out
    for p in parts:
        p.offset.fill_(offset)
