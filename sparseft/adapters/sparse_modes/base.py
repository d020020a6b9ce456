"""The protocol of a sparse mode (how a sparse adapter reaches its support), and what the trainer
hands it. One :class:`SparseMode` object runs per sparse adapter; :class:`~.SparseSchedule` combines
them for the trainer, which names no mode."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..._compat import torch
from ..ranking import block_groups, keep_top
from ..sparse import SparsePart


@dataclass(frozen=True)
class Plan:
    """The step budget a schedule works in: ``fix_at_step`` is where supports are fixed
    (``1 - retrain_fraction`` of ``total_steps``; ``None`` without a target density)."""

    total_steps: int
    target: float | None
    fix_at_step: int | None
    prune_start: int  # gradual / str_scheduled: the density schedule starts here
    cut_every: int  # gradual: steps between cuts


class OptimizerView:
    """What a mode may read of the optimiser: Adam's second moments, raw (for rankings) or as
    the bias-corrected step denominator ``sqrt(v_hat) + eps`` (for preconditioned steps)."""

    def __init__(self, optimizer: Any | None = None):
        self.optimizer = optimizer
        self._group = {}
        if optimizer is not None:
            for g in optimizer.param_groups:
                for p in g["params"]:
                    self._group[p] = g

    def second_moment(self, p: torch.Tensor) -> torch.Tensor | None:
        state = self.optimizer.state.get(p, {}) if self.optimizer is not None else {}
        return state.get("exp_avg_sq")

    def curvature(self) -> dict:
        """``{parameter: exp_avg_sq}`` of every parameter that has one."""
        if self.optimizer is None:
            return {}
        return {p: st["exp_avg_sq"] for p, st in self.optimizer.state.items() if "exp_avg_sq" in st}

    def denominator(self, p: torch.Tensor) -> torch.Tensor | None:
        """Adam's ``sqrt(v_hat) + eps`` of ``p`` (AMSGrad: of the running maximum); ``None`` before
        its first step."""
        state = self.optimizer.state.get(p, {}) if self.optimizer is not None else {}
        if "exp_avg_sq" not in state:
            return None
        group = self._group[p]
        v = state.get("max_exp_avg_sq", state["exp_avg_sq"]) if group.get("amsgrad") else state["exp_avg_sq"]
        step = float(state["step"])
        correction = 1 - group["betas"][1] ** step
        return (v / correction).sqrt() + group["eps"]


class SparseMode:
    """How one sparse adapter reaches its support. Subclasses declare:

    - ``needs_target``: whether ``train.target_density`` is required;
    - ``fixes_support``: whether a support is fixed at ``Plan.fix_at_step`` (``str``: never);
    - ``keeps_optimizer_state``: whether Adam's moments survive the fix step;
    - ``restarts_schedule``: whether the cosine lr schedule starts a fresh cycle at the fix step;

    and override the hooks they need: :meth:`make_part` (the part class), :meth:`prepare` (before the
    optimiser is built: choose a support up front, initialise), :meth:`before_step`,
    :meth:`after_step`, :meth:`fix`, :meth:`param_options` (optimiser options of some parameters).
    Every support choice goes through :meth:`keep` (:func:`sparseft.adapters.ranking.keep_top` with
    the adapter's ``allocation``).
    """

    name: ClassVar[str] = ""
    needs_target: ClassVar[bool] = True
    fixes_support: ClassVar[bool] = True
    keeps_optimizer_state: ClassVar[bool] = True
    restarts_schedule: ClassVar[bool] = False
    coverage: ClassVar[str] = ""  # what ``applicable`` admits, for error messages ("" = every block)

    def __init__(self, config, parts: list[SparsePart], plan: Plan):
        self.config = config
        self.parts = parts
        self.plan = plan

    # --- the part and its blocks
    @classmethod
    def applicable(cls, block) -> bool:
        return True

    @classmethod
    def make_part(cls, config, blocks, dtype, device) -> SparsePart:
        return SparsePart(blocks, dtype, device, 0.0, cls.name)

    # --- hooks
    def frames_needed(self) -> int:
        """Training structures :meth:`prepare` wants as batches (0: none)."""
        return 0

    def prepare(self, batches, forward_loss, frames: int, log=print, seed: int = 0) -> bool:
        """Before the optimiser is built; returns whether the support is now fixed."""
        return False

    def before_step(self, step: int) -> None:
        """Before optimiser step ``step`` (the support is not fixed yet)."""

    def after_step(self, step: int, lr: float, penalty_scale: float, optim: OptimizerView) -> None:
        """After optimiser step ``step`` (the support is not fixed yet), before the parts' own
        ``after_step`` (plain proximal steps, masks)."""

    def fix(self, optim: OptimizerView) -> None:
        """Fix the support at the target density (default: the top ``delta**2 x exp_avg_sq``)."""
        open_parts = [p for p in self.parts if not p.fixed]
        if open_parts:
            self.keep(open_parts, [saliency(p, optim) for p in open_parts], self.plan.target)

    def param_options(self) -> dict:
        """``{parameter: {"lr_scale": ..., "weight_decay": ...}}`` for parameters whose optimiser
        options differ from ``train``'s."""
        return {}

    # --- helpers
    def keep(self, parts: list[SparsePart], scores: list[torch.Tensor], density: float) -> None:
        """Fix the supports of ``parts`` to the top ``density`` of ``scores`` (the one ranking)."""
        masks = keep_top(scores, density, groups=block_groups(parts), allocation=self.config.allocation)
        for part, keep in zip(parts, masks):
            part.set_mask(keep)


def saliency(part: SparsePart, optim: OptimizerView) -> torch.Tensor:
    """``delta**2 x exp_avg_sq`` (the loss increase expected from resetting an entry; ``delta**2``
    before Adam's first step); entries outside a fixed mask get ``-inf`` (pruned stay pruned)."""
    v = optim.second_moment(part.delta)
    score = part.delta.detach() ** 2 * (v if v is not None else 1.0)
    if part.mask is not None:
        score = torch.where(part.mask.bool(), score, torch.full_like(score, -float("inf")))
    return score


def cubic_density(step: int, start: int, stop: int, target: float) -> float:
    """Zhu & Gupta's schedule: 1 before ``start``, ``target`` from ``stop``, cubic in between."""
    if step <= start:
        return 1.0
    if step >= stop:
        return target
    progress = (step - start) / max(1, stop - start)
    return target + (1.0 - target) * (1.0 - progress) ** 3
