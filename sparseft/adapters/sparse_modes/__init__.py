"""How a sparse adapter reaches its support (``SparseConfig.mode``): one strategy object per adapter
behind one protocol (:class:`~.base.SparseMode`), one file per mode, and :data:`MODES`, the registry.
A new mode is one file here and one line in :data:`MODES`.

- ``two_phase`` (:mod:`.two_phase`): L1 search (plain or Adam-preconditioned proximal steps), then a
  fixed support retrained with its own cosine cycle; Adam's moments carry over the cut.
- ``gradual`` (:mod:`.gradual`): gradual magnitude pruning on a cubic density schedule.
- ``fisher`` (:mod:`.fisher`): the support chosen up front from squared gradients, compacted.
- ``str`` (:mod:`.sigmoid_str`): Cho et al.'s STR (per-layer sigmoid thresholds learned jointly,
  weight decay on the thresholds only, no target density, no fixed support).
- ``str_scheduled`` (:mod:`.str_scheduled`): learnable per-block thresholds under a forced density
  schedule, then a fixed support (this was ``str`` before).

Every support choice ranks through :func:`sparseft.adapters.ranking.keep_top`. Once a support is
fixed during training the trainer compacts the parts: from then on the optimiser holds state for the
support alone, moments of the kept entries carried over.

The trainer talks to :class:`SparseSchedule` only: :meth:`~SparseSchedule.frames_needed` and
:meth:`~SparseSchedule.prepare` before it builds the optimiser, :meth:`~SparseSchedule.param_options`
for the optimiser, :meth:`~SparseSchedule.before_step` / :meth:`~SparseSchedule.after_step` around
each optimiser step, :meth:`~SparseSchedule.fix` at :attr:`~SparseSchedule.fix_at_step`, and the
declared properties ``keeps_optimizer_state`` and ``restarts_schedule``.
"""

from __future__ import annotations

from ..._compat import torch
from ..sparse import MODES as REGISTRY
from ..sparse import SparsePart
from .base import OptimizerView, Plan, SparseMode, cubic_density
from .fisher import Fisher, fisher_scores
from .gradual import Gradual
from .sigmoid_str import SigmoidSTR, STRPart
from .str_scheduled import STRScheduled, set_offsets
from .two_phase import TwoPhase

MODES: dict[str, type[SparseMode]] = REGISTRY  # the registry SparseConfig reads
MODES.update({cls.name: cls for cls in (TwoPhase, Gradual, Fisher, SigmoidSTR, STRScheduled)})

PRUNE_START = 0.1  # gradual / str_scheduled: the density schedule starts at this fraction of the search phase
PRUNE_CUTS = 20  # gradual: number of pruning steps along the schedule

__all__ = [
    "MODES",
    "OptimizerView",
    "Plan",
    "SparseMode",
    "SparseSchedule",
    "STRPart",
    "cubic_density",
    "fisher_scores",
    "set_offsets",
]


class SparseSchedule:
    """The trainer's view of every sparse adapter of a model: one :class:`SparseMode` per adapter.

    ``fix_at_step``: the step at which supports are fixed (``None``: never, e.g. no target density
    or only modes that fix none)."""

    def __init__(self, adapted, total_steps: int, target_density: float | None, retrain_fraction: float):
        self.model = adapted
        self.target = target_density
        by_adapter: dict[str, list[SparsePart]] = {}
        for name, _, part in adapted.all_parts():
            if isinstance(part, SparsePart):
                by_adapter.setdefault(name, []).append(part)
        configs = {c.name: c for c in adapted.configs}
        kinds = {name: MODES[configs[name].mode] for name in by_adapter}
        needs = sorted(n for n, cls in kinds.items() if cls.needs_target)
        if needs and target_density is None:
            raise ValueError(f"sparse adapter(s) {needs}: mode {kinds[needs[0]].name!r} needs train.target_density")
        fixing = any(cls.fixes_support for cls in kinds.values())
        fix_at = int(round(total_steps * (1 - retrain_fraction))) if fixing and target_density is not None else None
        prune_start = int(round(PRUNE_START * (fix_at or 0)))
        plan = Plan(
            total_steps=total_steps,
            target=target_density,
            fix_at_step=fix_at,
            prune_start=prune_start,
            cut_every=max(1, ((fix_at or 0) - prune_start) // PRUNE_CUTS),
        )
        self.modes: dict[str, SparseMode] = {n: kinds[n](configs[n], parts, plan) for n, parts in by_adapter.items()}
        self.fix_at_step = fix_at

    @property
    def active(self) -> bool:
        """Whether the model has a sparse adapter."""
        return bool(self.modes)

    @property
    def keeps_optimizer_state(self) -> bool:
        """Whether Adam's moments survive the fix step (every mode but a legacy one would)."""
        return all(m.keeps_optimizer_state for m in self.modes.values())

    @property
    def restarts_schedule(self) -> bool:
        """Whether the lr schedule gets a fresh cycle at the fix step (``two_phase``)."""
        return any(m.restarts_schedule for m in self.modes.values())

    def constrains_density(self) -> bool:
        """Whether some adapter must meet ``train.target_density`` (a mode that fixes a support)."""
        return self.fix_at_step is not None

    def frames_needed(self) -> int:
        """Training structures :meth:`prepare` wants (the most any mode asks for)."""
        return max((m.frames_needed() for m in self.modes.values()), default=0)

    def prepare(self, batches, forward_loss, frames: int, log=print, seed: int = 0) -> bool:
        """Every mode's ``prepare`` (before the optimiser is built). Returns whether a support was fixed."""
        fixed = False
        for mode in self.modes.values():
            fixed = mode.prepare(batches, forward_loss, frames, log, seed) or fixed
        self.model.zero_grad(set_to_none=True)
        return fixed

    def param_options(self) -> dict:
        """Optimiser options of some parameters (``lr_scale``, ``weight_decay``, ``search_lr_scale``)."""
        out: dict = {}
        for mode in self.modes.values():
            out.update(mode.param_options())
        return out

    def before_step(self, step: int, support_fixed: bool) -> None:
        if not support_fixed:
            for mode in self.modes.values():
                mode.before_step(step)

    @torch.no_grad()
    def after_step(self, step: int, lr: float, penalty_scale: float, support_fixed: bool, optim: OptimizerView):
        """After optimiser step ``step``, before the parts' own ``after_step``."""
        if not support_fixed:
            for mode in self.modes.values():
                mode.after_step(step, lr, penalty_scale, optim)

    @torch.no_grad()
    def fix(self, optim: OptimizerView) -> int:
        """Fix every mode's support at the target density; returns the entries kept (or changed)."""
        kept = 0
        for mode in self.modes.values():
            if mode.fixes_support:
                mode.fix(optim)
            for p in mode.parts:
                kept += int(p.mask.sum()) if p.mask is not None else int(p.values().detach().ne(0).sum())
        return kept
