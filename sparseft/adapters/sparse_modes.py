"""How a sparse adapter reaches its support (``SparseConfig.mode``), and the trainer's hooks for it.

- ``two_phase``: an L1 search (proximal soft-threshold after each step, strength ``l1`` in
  units of the step: each entry loses ``lr * l1`` per step), then at ``1 - retrain_fraction``
  of the steps the support is fixed at the target density (ranked by ``delta**2 x`` Adam's
  second moment) and retrained from fresh optimiser moments with its own cosine cycle.
- ``gradual``: gradual magnitude pruning (Zhu & Gupta 2017): dense at first, then the allowed
  density falls on a cubic schedule from 1 to the target between 10 % of the steps and
  ``1 - retrain_fraction``; at each of 20 cuts the lowest-saliency entries
  (``delta**2 x exp_avg_sq``) of the current support are dropped. The optimiser state is kept.
- ``fisher``: the support is chosen before training, the top ``target_density`` of the
  accumulated squared gradients (a diagonal Fisher) over the first ``fisher_frames``
  training structures (Sung et al. 2021); the part is compacted so that only the support
  has a parameter and optimiser state.
- ``str``: learnable soft thresholds (Kusupati et al. 2020): ``delta = sign(u) * relu(|u| -
  g)`` with ``g = exp(s_b + c)``, ``s_b`` learnable per block (trained with
  ``threshold_lr_scale x lr``) and ``c`` a global offset set before each step so that the
  density follows the same cubic schedule to the target; ``u`` gets a straight-through
  gradient where it is below the threshold (so zero entries can grow). The blocks compete
  for the density budget through ``s_b``; at ``1 - retrain_fraction`` the support is fixed
  (the thresholded values become the delta) and trained on with the optimiser state kept.

Once a support is fixed during training (every mode but ``fisher``, whose parts start compact),
the trainer compacts the parts (:meth:`sparseft.train.trainer.Trainer.compact`): from then on the
optimiser holds state for the support alone, moments of the kept entries carried over.

The trainer calls :class:`SparseSchedule`'s hooks: :meth:`~SparseSchedule.prepare` before it
builds the optimiser, :meth:`~SparseSchedule.before_step` and :meth:`~SparseSchedule.after_step`
around every optimiser step.
"""

from __future__ import annotations

import math
from collections import defaultdict

from .._compat import torch
from .sparse import MODES, SparsePart, ThresholdPart

__all__ = ["MODES", "SparseSchedule", "cubic_density", "set_offsets", "top_fraction"]
PRUNE_START = 0.1  # gradual / str: the density schedule starts at this fraction of the search phase
PRUNE_CUTS = 20  # gradual: number of pruning steps along the schedule


def cubic_density(step: int, start: int, stop: int, target: float) -> float:
    """Zhu & Gupta's schedule: 1 before ``start``, ``target`` from ``stop``, cubic in between."""
    if step <= start:
        return 1.0
    if step >= stop:
        return target
    progress = (step - start) / max(1, stop - start)
    return target + (1.0 - target) * (1.0 - progress) ** 3


def set_offsets(parts: list[ThresholdPart], density: float) -> None:
    """Set the global offset of ``parts`` (one adapter) so that a ``density`` fraction is active."""
    parts = [p for p in parts if not p.fixed]
    if not parts:
        return
    scores = torch.cat([p.scores() for p in parts])
    k = int(round(density * scores.numel()))
    if k >= scores.numel() or density >= 1.0:
        offset = -math.inf
    else:
        offset = float(torch.kthvalue(scores.cpu().double(), scores.numel() - max(k, 1)).values)
    for p in parts:
        p.offset.fill_(offset)


def fisher_scores(model, parts: list[SparsePart], batches, forward_loss) -> dict:
    """Accumulated squared gradients of the loss w.r.t. each part's delta over ``batches``."""
    sums = {p: torch.zeros_like(p.delta) for p in parts}
    for batch in batches:
        model.zero_grad(set_to_none=True)
        forward_loss(batch).backward()
        for p in parts:
            if p.delta.grad is not None:
                sums[p] += p.delta.grad.detach() ** 2
    model.zero_grad(set_to_none=True)
    return sums


def top_fraction(scores: list[torch.Tensor], density: float) -> list[torch.Tensor]:
    """Bool masks keeping exactly ``round(density * n)`` (at least 1) highest of the joined scores."""
    joined = torch.cat([s.reshape(-1) for s in scores])
    k = max(1, int(round(density * joined.numel())))
    keep = torch.zeros(joined.numel(), dtype=torch.bool, device=joined.device)
    keep[torch.argsort(joined, descending=True, stable=True)[:k]] = True
    out, start = [], 0
    for s in scores:
        out.append(keep[start : start + s.numel()])
        start += s.numel()
    return out


class SparseSchedule:
    """The trainer's hooks for every sparse adapter of a model, by mode.

    ``fix_at_step``: the step at which the support becomes fixed (``None``: never, or already).
    """

    def __init__(self, adapted, total_steps: int, target_density: float | None, retrain_fraction: float):
        self.model = adapted
        self.target = target_density
        self.by_adapter: dict[str, list[SparsePart]] = defaultdict(list)
        for name, _, part in adapted.all_parts():
            if isinstance(part, SparsePart):
                self.by_adapter[name].append(part)
        self.modes = {name: parts[0].mode for name, parts in self.by_adapter.items()}
        self.fix_at_step = None
        if self.by_adapter and target_density is not None:
            self.fix_at_step = int(round(total_steps * (1 - retrain_fraction)))
        self.prune_start = int(round(PRUNE_START * (self.fix_at_step or 0)))
        self.cut_every = max(1, ((self.fix_at_step or 0) - self.prune_start) // PRUNE_CUTS)
        needs_target = sorted(n for n, m in self.modes.items() if m != "two_phase")
        if needs_target and target_density is None:
            raise ValueError(
                f"sparse adapter(s) {needs_target}: mode {self.modes[needs_target[0]]!r} needs train.target_density"
            )

    def uses(self, mode: str) -> bool:
        return mode in self.modes.values()

    @property
    def resets_optimizer(self) -> bool:
        """Whether the optimiser state is cleared at the fix step (``two_phase`` only)."""
        return self.uses("two_phase")

    @property
    def restarts_schedule(self) -> bool:
        """Whether the lr schedule gets a fresh cycle at the fix step (``two_phase`` only)."""
        return self.uses("two_phase")

    def prepare(self, batches, forward_loss, frames: int, log=print) -> bool:
        """``fisher`` adapters: pick and compact the support from ``batches`` (call before the
        optimiser is built). Returns whether any support was fixed."""
        fixed = False
        for name, parts in self.by_adapter.items():
            if self.modes[name] != "fisher" or all(p.fixed for p in parts):
                continue
            sums = fisher_scores(self.model, parts, batches, forward_loss)
            for part, keep in zip(parts, top_fraction([sums[p] for p in parts], self.target)):
                part.compact(keep)
            kept = sum(int(p.delta.numel()) for p in parts)
            log(
                f"{name}: support fixed before training from squared gradients over {frames} structures "
                f"({kept} entries, density {self.target})"
            )
            fixed = True
        return fixed

    def before_step(self, step: int, support_fixed: bool) -> None:
        """``str`` adapters: set the threshold offsets to the scheduled density."""
        if support_fixed or not self.uses("str"):
            return
        density = cubic_density(step, self.prune_start, self.fix_at_step, self.target)
        for name, parts in self.by_adapter.items():
            if self.modes[name] == "str":
                set_offsets(parts, density)

    @torch.no_grad()
    def after_step(self, step: int, support_fixed: bool, curvature: dict) -> None:
        """After optimiser step ``step`` (and the parts' own ``after_step``: proximal steps,
        masks): the pruning cuts of ``gradual`` adapters."""
        if support_fixed or self.fix_at_step is None or not self.uses("gradual") or not self._is_cut(step):
            return
        density = cubic_density(step, self.prune_start, self.fix_at_step, self.target)
        for name, parts in self.by_adapter.items():
            if self.modes[name] == "gradual":
                self._cut(parts, density, curvature)

    def _is_cut(self, step: int) -> bool:
        return self.prune_start <= step < self.fix_at_step and (step - self.prune_start) % self.cut_every == 0

    def _cut(self, parts: list[SparsePart], density: float, curvature: dict) -> None:
        saliency = []
        for p in parts:
            score = p.delta.detach() ** 2 * curvature.get(p.delta, torch.ones_like(p.delta))
            if p.mask is not None:
                score = torch.where(p.mask.bool(), score, torch.full_like(score, -1.0))  # pruned stay pruned
            saliency.append(score)
        for part, keep in zip(parts, top_fraction(saliency, density)):
            part.set_mask(keep)

    def fix(self, curvature: dict) -> int:
        """Fix every unfixed support at the target density; returns the entries kept."""
        kept = 0
        for name, parts in self.by_adapter.items():
            open_parts = [p for p in parts if not p.fixed or self.modes[name] == "gradual"]
            if not open_parts:
                kept += sum(int(p.values().detach().ne(0).sum()) for p in parts)
                continue
            if self.modes[name] == "str":
                set_offsets(open_parts, self.target)
                scores = [p.values().detach().abs() for p in open_parts]  # the thresholded support
            else:
                scores = []
                for p in open_parts:
                    score = p.delta.detach() ** 2 * curvature.get(p.delta, torch.ones_like(p.delta))
                    if p.mask is not None:
                        score = torch.where(p.mask.bool(), score, torch.full_like(score, -1.0))
                    scores.append(score)
            for part, keep in zip(open_parts, top_fraction(scores, self.target)):
                part.set_mask(keep)
            kept += sum(int(p.mask.sum()) for p in open_parts)
        return kept
