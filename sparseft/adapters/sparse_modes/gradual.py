"""``gradual``: gradual magnitude pruning (Zhu & Gupta 2017): dense at first, then the allowed
density falls on a cubic schedule from 1 to the target between 10 % of the search and
``1 - retrain_fraction`` of the steps; at each of 20 cuts the lowest-saliency entries
(``delta**2 x exp_avg_sq``) of the current support are dropped. The optimiser state is kept."""

from __future__ import annotations

from ..._compat import torch
from .base import OptimizerView, SparseMode, cubic_density, saliency


class Gradual(SparseMode):
    name = "gradual"

    def _is_cut(self, step: int) -> bool:
        plan = self.plan
        return plan.prune_start <= step < plan.fix_at_step and (step - plan.prune_start) % plan.cut_every == 0

    @torch.no_grad()
    def after_step(self, step: int, lr: float, penalty_scale: float, optim: OptimizerView) -> None:
        if self.plan.fix_at_step is None or not self._is_cut(step):
            return
        density = cubic_density(step, self.plan.prune_start, self.plan.fix_at_step, self.plan.target)
        self.keep(self.parts, [saliency(p, optim) for p in self.parts], density)

    def fix(self, optim: OptimizerView) -> None:
        """The last cut, to the target (every part: the masks of the cuts are not final)."""
        self.keep(self.parts, [saliency(p, optim) for p in self.parts], self.plan.target)
