"""Stage two (mace_run_train's ``--swa``): for the last epochs, another learning rate and other
loss weights.

As in mace-torch 0.3.16 (``tools/train.py``, ``scripts_utils.get_swa``): stage two starts at
epoch index ``start_swa`` (default ``max(1, epochs // 4 * 3)``), or earlier when patience runs
out first; from then on the rate is ``swa_lr`` (mace's one-epoch ``SWALR`` anneal reaches it at
the first stage-two epoch), the foundation head's loss weights are the ``swa_*`` ones (also for
the validation loss), and the best epoch is chosen among stage-two epochs alone (mace resets
its lowest loss and restarts from its ``_swa`` checkpoint). mace's ``AveragedModel`` is updated
but never used for the result, so stage two keeps the EMA (``train.ema_decay``) and adds no
weight average. Unlike mace, an early start does not skip epochs: stage two runs to the end of
the epoch budget (or until patience runs out again).
"""

from __future__ import annotations

import math


def start_epoch(config) -> int:
    """The epoch index stage two starts at (``config`` is a ``TrainSection``)."""
    return config.start_swa if config.start_swa is not None else max(1, config.epochs // 4 * 3)


def check_budget(config, steps_per_epoch: int, total_steps: int) -> None:
    """A ``ValueError`` when ``train.max_steps`` ends training before stage two starts."""
    if not config.swa:
        return
    step = start_epoch(config) * steps_per_epoch
    if step >= total_steps:
        raise ValueError(
            f"train.start_swa: stage two starts at epoch {start_epoch(config) + 1} (step {step}), but "
            f"train.max_steps ({config.max_steps}) ends training at step {total_steps}; lower train.start_swa "
            "or raise train.max_steps"
        )


def due(config, state) -> bool:
    """Whether stage two starts with the next epoch: its epoch is reached, or patience ran out in
    stage one (``state`` is the ``TrainState`` at an epoch boundary)."""
    if not config.swa or state.stage_two_step is not None:
        return False
    patience_out = config.patience is not None and state.bad_epochs > config.patience
    return state.epoch >= start_epoch(config) or patience_out


def weights(config, stage_one: dict) -> dict:
    """The stage-two loss weights: the foundation head's ``swa_*`` weights (stress only where it
    trains in stage one); other heads keep theirs."""
    out = dict(stage_one)
    out["energy"] = config.swa_energy_weight
    out["forces"] = config.swa_forces_weight
    out["stress"] = config.swa_stress_weight if stage_one.get("stress", 0.0) > 0 else 0.0
    return out


def start(state, config, log, loss_weights: dict) -> None:
    """Enter stage two at this epoch boundary (``loss_weights``: :func:`weights`, for the log):
    record where, and restart best-epoch selection."""
    patience_out = state.epoch < start_epoch(config)
    state.stage_two_epoch, state.stage_two_step = state.epoch, state.step
    state.best_valid, state.best_epoch, state.best_guarded, state.bad_epochs = math.inf, -1, False, 0
    reason = "patience ran out in stage one: starting stage two" if patience_out else "stage two"
    log(
        f"{reason} from epoch {state.epoch + 1} (step {state.step}, train.swa as mace_run_train --swa): lr "
        f"{config.swa_lr:g}, loss weights energy {loss_weights['energy']:g} forces {loss_weights['forces']:g} "
        f"stress {loss_weights['stress']:g}; the best epoch is chosen among stage-two epochs"
    )
