"""Once the support is fixed, sparse parts are compacted: parameters and Adam moments cover only
the support, training gives the same adapter as the masked full-size parts, and checkpoints
taken after the compaction resume exactly."""

from __future__ import annotations

import copy

import pytest
from safetensors.torch import load_file

from sparseft._compat import torch
from sparseft.adapters import SparseConfig
from sparseft.data import Frames, Keys, to_atomic_data
from sparseft.model import wrap
from sparseft.recipe import TrainSection
from sparseft.testing.tiny import tiny_mace
from sparseft.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from sparseft.train.trainer import Trainer

from ..finetune_data import emt_frames

SETTINGS = dict(epochs=6, batch_size=4, lr=0.01, target_density=0.1, retrain_fraction=0.5, seed=3)


@pytest.fixture(scope="module")
def base_and_data():
    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    adapted = wrap(copy.deepcopy(base), [SparseConfig()])
    data = to_atomic_data(Frames("emt", emt_frames(12, stress=False), list(range(12))), adapted, Keys())
    return base, data


def _trainer(base_and_data, mode: str, compact: bool, **train) -> Trainer:
    base, data = base_and_data
    adapted = wrap(copy.deepcopy(base), [SparseConfig(l1=0.1, mode=mode)])
    config = TrainSection(**{**SETTINGS, **train})
    return Trainer(
        adapted,
        data[:9],
        data[9:],
        config,
        device="cpu",
        compute_stress=False,
        log=lambda _m: None,
        compact_support=compact,
    )


def _joined(trainer: Trainer):
    return torch.cat([p.values().detach() for p in trainer.adapted.prunable_parts()])


def _state_entries(trainer: Trainer) -> int:
    """Per-entry optimiser state, in entries per weight (Adam: 2 moments; AMSGrad: 3)."""
    total = sum(v.numel() for s in trainer.optimizer.state.values() for v in s.values() if v.dim())
    return total // (3 if trainer.config.amsgrad else 2)


@pytest.mark.parametrize(
    "mode,train",
    [
        ("two_phase", dict(ema_decay=0.5)),
        ("gradual", dict(optimizer="adamw", weight_decay=0.01, clip_grad=1.0)),  # moments carried over
        ("str_scheduled", {}),
    ],
)
def test_compacted_training_equals_masked_training(base_and_data, one_thread, mode, train):
    masked, compacted = (_trainer(base_and_data, mode, compact, **train) for compact in (False, True))
    selected = masked.adapted.num_trainable()
    for trainer in (masked, compacted):
        trainer.fit()
        trainer.load_best()
    a, b = _joined(masked), _joined(compacted)
    support = sum(int(p.mask.sum()) for p in masked.adapted.prunable_parts())
    assert all(p.support is None for p in masked.adapted.prunable_parts())
    assert all(p.support is not None and p.mask is None for p in compacted.adapted.prunable_parts())
    assert compacted.adapted.num_trainable() == support < selected  # str's thresholds stop training too
    assert (a - b).abs().max() <= 1e-10 * a.abs().max()
    assert masked.adapted.density()["changed"] == compacted.adapted.density()["changed"] > 0
    assert _state_entries(masked) == selected
    assert _state_entries(compacted) == support, "Adam moments cover only the support"
    deltas = [id(p.delta) for p in compacted.adapted.prunable_parts()]
    assert deltas == [id(p) for g in compacted.optimizer.param_groups for p in g["params"]]


class _Stop(Exception):
    pass


def test_a_checkpoint_after_compaction_resumes_exactly(base_and_data, one_thread, tmp_path):
    whole = _trainer(base_and_data, "gradual", True)  # gradual: the moments carry across the fix
    whole.fit()
    first = _trainer(base_and_data, "gradual", True)

    def stop_after_fix(state):
        if state.support_fixed:
            save_checkpoint(tmp_path, first, state)
            raise _Stop

    with pytest.raises(_Stop):
        first.fit(on_epoch_end=stop_after_fix)
    saved = load_file(str(find_checkpoint(tmp_path) / "tensors.safetensors"))
    parts = first.adapted.prunable_parts()
    for j, part in enumerate(parts):
        i = next(i for i, p in enumerate(first.params) if p is part.delta)
        assert saved[f"support/{j}"].numel() == saved[f"param/{i}"].numel() == part.delta.numel()
        assert f"mask/{j}" not in saved and saved[f"optim/{i}/exp_avg"].numel() == part.delta.numel()
    resumed = _trainer(base_and_data, "gradual", True)
    state = load_checkpoint(tmp_path, resumed)
    assert state.support_fixed and 0 < state.epoch < SETTINGS["epochs"]
    assert [p.shape for p in resumed.params] == [p.shape for p in first.params]
    resumed.fit(state)
    a, b = _joined(whole), _joined(resumed)
    assert (a - b).abs().max() <= 1e-12 * a.abs().max()


def test_a_masked_checkpoint_is_compacted_on_resume(base_and_data, one_thread, tmp_path):
    """A checkpoint of a run that did not compact (an earlier sparseft) resumes compacted."""
    masked = _trainer(base_and_data, "two_phase", False)

    def stop_after_fix(state):
        if state.support_fixed:
            save_checkpoint(tmp_path, masked, state)
            raise _Stop

    with pytest.raises(_Stop):
        masked.fit(on_epoch_end=stop_after_fix)
    resumed = _trainer(base_and_data, "two_phase", True)
    state = load_checkpoint(tmp_path, resumed)
    parts = resumed.adapted.prunable_parts()
    assert all(p.support is not None for p in parts)
    support = sum(int(p.mask.sum()) for p in masked.adapted.prunable_parts())
    assert sum(p.delta.numel() for p in parts) == support
    assert _state_entries(resumed) == support
    assert (_joined(masked) - _joined(resumed)).abs().max() == 0
    masked.fit(state=copy.deepcopy(state))
    resumed.fit(state)
    a, b = _joined(masked), _joined(resumed)
    assert (a - b).abs().max() <= 1e-10 * a.abs().max()
