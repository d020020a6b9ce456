"""The progress of a training run: what a checkpoint carries besides tensors (JSON-friendly)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class TrainState:
    """Everything about progress that a checkpoint must carry (JSON-friendly)."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps taken
    step_in_epoch: int = 0  # steps of the current, unfinished epoch (after Ctrl-C)
    epoch_sums: dict = field(default_factory=dict)  # running loss sums of the unfinished epoch
    support_fixed: bool = False
    best_valid: float = math.inf
    best_epoch: int = -1
    zero_shot: dict = field(default_factory=dict)  # the untouched model's validation MAEs (the guard)
    best_guarded: bool = False  # the best epoch is no worse than zero-shot on every guarded MAE
    bad_epochs: int = 0
    plateau_lr_scale: float = 1.0
    plateau_best: float = math.inf
    plateau_bad: int = 0
    history: list = field(default_factory=list)
    done: bool = False
    interrupted: bool = False
    stage_two_epoch: int | None = None  # epoch index where stage two (train.swa) started; None: not (yet)
    stage_two_step: int | None = None  # the step it started at

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("best_valid", "plateau_best"):
            out[key] = None if math.isinf(out[key]) else out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        data = dict(data)
        for key in ("best_valid", "plateau_best"):
            data[key] = math.inf if data.get(key) is None else data[key]
        return cls(**data)
