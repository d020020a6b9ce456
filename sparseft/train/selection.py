"""After each validated epoch: the plateau schedule's counter, the best epoch (the result) and
early stopping; when training is over."""

from __future__ import annotations

import math

from . import stage_two
from .state import TrainState

# validation MAEs the zero-shot guard keeps from regressing, of every head ("<head>.forces_mae", ...)
GUARDED = ("energy_per_atom_mae", "forces_mae", "magmoms_mae")


def check_select_on(config, valid_data: list, compute_stress: bool) -> None:
    """A ``ValueError`` before training when ``train.select_on`` names a validation quantity that
    will not exist: no validation structures (the training loss would silently stand in), none
    with that label, or stress that is not computed."""
    if config.select_on == "loss":
        return
    where = f"train.select_on: {config.select_on}"
    if not valid_data:
        raise ValueError(
            f"{where} needs validation structures (data.valid or data.valid_fraction > 0); without them "
            "only 'loss' (the training loss) can pick the best epoch"
        )
    label = _label(config.select_on)
    if label == "stress" and not compute_stress:
        raise ValueError(f"{where}: stress is not trained in this run (no stress labels or stress_weight 0)")
    if not any(bool((g[f"{label}_weight"] > 0).any()) for g in valid_data if f"{label}_weight" in g):
        raise _no_labels(config.select_on)


def _label(select_on: str) -> str:
    """The label a ``train.select_on`` error is measured against (``forces_mae`` -> ``forces``)."""
    return {"energy_per_atom": "energy", "forces": "forces", "stress": "stress"}[select_on.rsplit("_", 1)[0]]


def _no_labels(select_on: str) -> ValueError:
    return ValueError(
        f"train.select_on: {select_on}: no validation structure has {_label(select_on)} labels; "
        "choose a quantity the validation split has, or 'loss'"
    )


def selection_metric(config, valid: dict, train_loss: float) -> float:
    """The number :func:`judge_epoch` compares: ``valid[train.select_on]`` (the validation loss by
    default; the training loss when nothing was validated)."""
    if config.select_on == "loss":
        return valid.get("loss", train_loss)
    value = valid.get(config.select_on)
    if value is None:  # checked before training (check_select_on); a head-less split could still lack it
        raise _no_labels(config.select_on)
    return value


def judge_epoch(config, state: TrainState, metric: float, valid: dict, eligible: bool) -> bool:
    """Update ``state`` for a validated epoch whose :func:`selection_metric` is ``metric``; True when
    it is the new best. Best = lowest metric among ``eligible`` epochs (once the support is
    fixed only post-fix epochs are); with the zero-shot guard an epoch no worse than zero-shot on
    every guarded MAE beats any that is worse."""
    if config.scheduler == "plateau":
        if metric < state.plateau_best * (1 - 1e-4):
            state.plateau_best, state.plateau_bad = metric, 0
        else:
            state.plateau_bad += 1
            if state.plateau_bad > 2:
                state.plateau_lr_scale *= 0.5
                state.plateau_bad = 0
    guarded = all(valid.get(k) is not None and valid[k] <= v for k, v in state.zero_shot.items())
    lower = metric < state.best_valid - 1e-6 * abs(state.best_valid if math.isfinite(state.best_valid) else 0)
    better = (guarded and not state.best_guarded) or (guarded == state.best_guarded and lower)
    if eligible and better:
        state.best_valid, state.best_epoch, state.bad_epochs = metric, state.epoch, 0
        state.best_guarded = guarded
        return True
    if eligible:
        state.bad_epochs += 1
    return False


def budget_done(config, epoch: int, step: int) -> bool:
    """Whether ``epoch`` completed epochs or ``step`` steps spend the budget."""
    return epoch >= config.epochs or (config.max_steps is not None and step >= config.max_steps)


def finished(config, state: TrainState) -> bool:
    """Whether training is over: the epoch or step budget is spent, or patience ran out (with
    ``train.swa``, in stage two: in stage one it starts stage two)."""
    patience_out = config.patience is not None and state.bad_epochs > config.patience
    return budget_done(config, state.epoch, state.step) or (patience_out and not stage_two.due(config, state))
