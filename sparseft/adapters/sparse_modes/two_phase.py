"""``two_phase``: an L1 search, then a fixed support retrained.

Search: a proximal soft-threshold after each step, ``plain`` (each entry loses ``lr * l1``) or
``adam`` (preconditioned: entry ``i`` loses ``lr * l1 * mean(sqrt(v_hat)) / (sqrt(v_hat_i) + eps)``,
the proximal step of an L1 penalty in Adam's metric, scaled so that ``l1`` keeps its unit-free
meaning), at ``search_lr_scale x`` the learning rate. At ``1 - retrain_fraction`` of the steps the
support is fixed at the target density (ranked by ``delta**2 x`` Adam's second moment) and retrained
with its own cosine cycle; Adam's moments of the kept entries carry over. Without a target density
the L1 search runs to the end (the support is what the penalty left)."""

from __future__ import annotations

from ..._compat import torch
from ..sparse import SparsePart
from .base import OptimizerView, SparseMode


class TwoPhase(SparseMode):
    name = "two_phase"
    needs_target = False
    restarts_schedule = True

    @classmethod
    def make_part(cls, config, blocks, dtype, device) -> SparsePart:
        plain = config.l1 if config.proximal == "plain" else 0.0  # adam: the mode shrinks (after_step)
        return SparsePart(blocks, dtype, device, plain, cls.name)

    @torch.no_grad()
    def after_step(self, step: int, lr: float, penalty_scale: float, optim: OptimizerView) -> None:
        if self.config.proximal != "adam" or self.config.l1 * penalty_scale <= 0:
            return
        parts = [p for p in self.parts if not p.fixed]
        denominators = [optim.denominator(p.delta) for p in parts]
        seen = [d for d in denominators if d is not None]
        if not seen:
            return
        reference = torch.cat([d.reshape(-1) for d in seen]).mean()
        for part, denominator in zip(parts, denominators):
            if denominator is None:
                part.proximal_step(lr, self.config.l1 * penalty_scale)
            else:
                part.shrink(lr * self.config.l1 * penalty_scale * reference / denominator)

    def param_options(self) -> dict:
        if self.config.search_lr_scale == 1.0:
            return {}
        return {p.delta: {"search_lr_scale": self.config.search_lr_scale} for p in self.parts}
