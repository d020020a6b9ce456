"""What changes with the step: the learning rate, the L1 ramp and (``loss_weighting:
random``) the loss weights. Pure functions of the config and the step, so a resumed run follows
the same schedules."""

from __future__ import annotations

import math

from .._compat import torch
from .state import TrainState


def learning_rate(
    config, step: int, state: TrainState, *, steps_per_epoch: int, total_steps: int, cycle_end: int | None
) -> float:
    """The lr of ``step``: stage two's ``swa_lr``; linear warm-up over ``warmup_epochs``; then
    cosine down to 5% at ``total_steps`` (restarted at ``cycle_end`` when the sparse mode retrains
    on its own cycle), the plateau factor, ``lr_gamma`` to the power of the epochs after warm-up
    (``exponential``: torch's ExponentialLR stepped once an epoch, as sevenn and mace_run_train
    do), or constant."""
    c = config
    if state.stage_two_step is not None and step >= state.stage_two_step:
        return c.swa_lr
    warm = c.warmup_epochs * steps_per_epoch
    if warm and step < warm:
        return c.lr * (step + 1) / warm
    if c.scheduler == "cosine":
        start, stop = warm, total_steps
        if cycle_end is not None:  # retraining's own cycle
            start, stop = (start, cycle_end) if step < cycle_end else (cycle_end, stop)
        progress = (step - start) / max(1, stop - start)
        return c.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    if c.scheduler == "plateau":
        return c.lr * state.plateau_lr_scale
    if c.scheduler == "exponential":
        return c.lr * c.lr_gamma ** ((step - warm) // steps_per_epoch)
    return c.lr


def l1_factor(config, step: int, search_end: int) -> float:
    """The L1 penalty's factor: 1, or (``l1_schedule: warmup``) a linear ramp over the first half
    of the search (which ends at ``search_end``)."""
    if config.l1_schedule == "warmup":
        return min(1.0, (step + 1) / max(1, search_end // 2))
    return 1.0


def loss_weights(config, weights: dict, step: int) -> dict:
    """Loss weights of one step: ``weights``, or (``loss_weighting: random``) those times
    ``K * softmax(z)``, ``z ~ N(0, 1)`` per task (random loss weighting, Lin et al. 2022), drawn
    from a generator seeded by (seed, step) so resumed runs draw the same weights."""
    if config.loss_weighting != "random":
        return weights
    active = [name for name, w in weights.items() if w > 0]
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    factors = torch.softmax(torch.randn(len(active), generator=generator, dtype=torch.float64), 0) * len(active)
    return {**weights, **{name: weights[name] * float(f) for name, f in zip(active, factors)}}
