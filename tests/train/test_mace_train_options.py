"""What users of mace_run_train expect (issue 21, item 13): ``train.eval_interval``,
``train.keep_checkpoints`` and stage two (``train.swa`` and friends, mace's ``--swa``)."""

from __future__ import annotations

import copy

import pytest

from sparseft._compat import torch
from sparseft.adapters import SparseConfig
from sparseft.data import Frames, Keys, to_atomic_data
from sparseft.model import wrap
from sparseft.recipe import RecipeError, TrainSection, recipe_from_dict
from sparseft.testing.tiny import tiny_mace
from sparseft.train.checkpoint import CHECKPOINT_DIR, find_checkpoint, load_checkpoint, remove_stale, save_checkpoint
from sparseft.train.trainer import Trainer, TrainState

from ..finetune_data import emt_frames


@pytest.fixture(scope="module")
def pieces():
    """A tiny Cu/Au model and 8 EMT frames as AtomicData: 6 train (2 steps per epoch), 2 valid."""
    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    adapted = wrap(copy.deepcopy(base), [SparseConfig(l1=0.1)])
    data = to_atomic_data(Frames("emt", emt_frames(8, stress=False), list(range(8))), adapted, Keys())
    return base, data


def _trainer(pieces, log=None, **train):
    base, data = pieces
    settings = {"epochs": 4, "batch_size": 3, "lr": 0.01, "scheduler": "constant", **train}
    adapted = wrap(copy.deepcopy(base), [SparseConfig(l1=0.1)])
    messages = [] if log is None else log
    return Trainer(
        adapted, data[:6], data[6:], TrainSection(**settings), device="cpu", compute_stress=False, log=messages.append
    )


def _record_steps(trainer) -> list:
    """Wrap ``trainer._step``: (step, lr of the optimiser, loss weights) of every step taken."""
    seen = []
    step = trainer._step

    def recording(local, state):
        loss = step(local, state)
        lr = trainer.optimizer.param_groups[0]["lr"]
        seen.append((state.step - 1, lr, dict(trainer.weights_at(state.step - 1))))
        return loss

    trainer._step = recording
    return seen


def _train(**section) -> TrainSection:
    return recipe_from_dict({"data": {"train": "t.xyz"}, "adapters": [{"method": "sparse"}], "train": section}).train


# ----------------------------------------------------------------------------- recipe keys
@pytest.mark.parametrize(
    "section, message",
    [
        ({"eval_interval": 0}, "train.eval_interval: must be >= 1, got 0"),
        ({"keep_checkpoints": 0}, "train.keep_checkpoints: must be >= 1, got 0"),
        ({"swa": True, "swa_lr": 0}, "train.swa_lr: must be > 0, got 0"),
        ({"swa": True, "swa_energy_weight": -1}, "train.swa_energy_weight: must be >= 0, got -1"),
        ({"swa": True, "start_swa": 0}, "train.start_swa: must be >= 1, got 0"),
        (
            {"swa": True, "start_swa": 20, "epochs": 20},
            "train.start_swa: must be < train.epochs (20) for stage two to run, got 20",
        ),
        ({"swa": True, "epochs": 1}, "train.swa: stage two needs train.epochs >= 2"),
    ],
)
def test_the_new_train_keys_declare_their_ranges(section, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _train(**section)


def test_the_new_train_keys_default_to_mace_run_train():
    t = _train()
    assert (t.eval_interval, t.keep_checkpoints, t.swa, t.start_swa) == (1, 1, False, None)
    # mace-torch 0.3.16's defaults for --swa_lr and the stage-two loss weights
    assert (t.swa_lr, t.swa_energy_weight, t.swa_forces_weight, t.swa_stress_weight) == (1e-3, 1000.0, 100.0, 10.0)
    assert _train(keep_checkpoints=None).keep_checkpoints is None  # null: keep every checkpoint


# ----------------------------------------------------------------------------- stage two
def test_stage_two_switches_weights_and_lr_at_its_epoch(pieces):
    log = []
    trainer = _trainer(pieces, log, swa=True, start_swa=2, swa_lr=1e-3, swa_energy_weight=500.0, swa_forces_weight=50.0)
    seen = _record_steps(trainer)
    state = trainer.fit()
    assert [s for s, _, _ in seen] == list(range(8))  # 4 epochs of 2 steps
    for step, lr, weights in seen:
        if step < 4:  # epochs 1 and 2: stage one
            assert lr == pytest.approx(0.01) and (weights["energy"], weights["forces"]) == (100.0, 10.0), step
        else:  # from the third epoch (mace: epoch index start_swa) on
            assert lr == pytest.approx(1e-3) and (weights["energy"], weights["forces"]) == (500.0, 50.0), step
    assert weights["stress"] == 0.0  # no stress trained: stage two does not add it
    assert (state.stage_two_epoch, state.stage_two_step) == (2, 4)
    assert [row["lr"] for row in state.history] == pytest.approx([0.01, 0.01, 1e-3, 1e-3])
    assert state.best_epoch in (3, 4)  # the best is chosen among stage-two epochs (mace's swa checkpoint)
    assert any("stage two" in m and "epoch 3" in m for m in log), log


def test_stage_two_starts_at_three_quarters_by_default(pieces):
    trainer = _trainer(pieces, swa=True, epochs=8)
    state = TrainState()
    for _ in range(8):
        trainer._run_epoch(state)
    assert state.stage_two_epoch == 6  # mace: max(1, max_num_epochs // 4 * 3)


def test_patience_in_stage_one_starts_stage_two_instead_of_stopping(pieces):
    """mace_run_train: when patience runs out before stage two, stage two starts."""
    log = []
    trainer = _trainer(pieces, log, swa=True, epochs=10, start_swa=8, patience=0, lr=1e-12, swa_lr=1e-12)
    state = trainer.fit()
    assert state.stage_two_epoch is not None and state.stage_two_epoch < 8
    assert state.epoch < 10  # patience then stops stage two
    assert any("starting stage two" in m for m in log), log


def test_max_steps_that_end_before_stage_two_is_an_error(pieces):
    with pytest.raises(ValueError, match="train.start_swa.*train.max_steps"):
        _trainer(pieces, swa=True, start_swa=3, max_steps=5)


def test_resume_across_the_stage_switch_matches_an_uninterrupted_run(pieces, tmp_path):
    settings = {"swa": True, "start_swa": 2, "ema_decay": 0.5}
    reference = _trainer(pieces, **settings)
    expected = reference.fit()
    for stop_after in (1, 3):  # a checkpoint before the switch, and one after it
        first = _trainer(pieces, **settings)
        state = TrainState(zero_shot=dict(expected.zero_shot))  # what fit() measures before the first step
        for _ in range(stop_after):
            first._run_epoch(state)
        save_checkpoint(tmp_path / str(stop_after), first, state)
        resumed = _trainer(pieces, **settings)
        seen = _record_steps(resumed)
        state = resumed.fit(load_checkpoint(tmp_path / str(stop_after), resumed))
        assert all(lr == pytest.approx(1e-3) and w["energy"] == 1000.0 for step, lr, w in seen if step >= 4)
        assert (state.stage_two_epoch, state.best_epoch) == (expected.stage_two_epoch, expected.best_epoch)
        for p, q in zip(resumed.params, reference.params):
            assert torch.equal(p.detach(), q.detach()), stop_after


# ----------------------------------------------------------------------------- eval_interval
def test_validation_runs_every_n_epochs_and_after_the_last(pieces):
    trainer = _trainer(pieces, epochs=6, eval_interval=2)
    calls = []
    evaluate = trainer.evaluate
    trainer.evaluate = lambda data: calls.append(1) or evaluate(data)
    state = trainer.fit()
    validated = [row["epoch"] for row in state.history if row["valid_loss"] is not None]
    assert validated == [1, 3, 5, 6]  # mace: epoch index % eval_interval == 0; sparseft adds the last
    assert len(calls) == 1 + 4  # the zero-shot guard's, then one per validated epoch
    assert state.best_epoch in validated


def test_early_stopping_counts_validated_epochs_only(pieces):
    # a flat validation loss: each validated epoch after the first is one without improvement
    flat = {"epochs": 20, "lr": 1e-12, "patience": 1}
    every = _trainer(pieces, **flat).fit()
    second = _trainer(pieces, eval_interval=2, **flat).fit()
    assert every.epoch == 3  # validated 1 (best), 2, 3: two bad epochs > patience 1
    assert second.epoch == 5  # validated 1 (best), 3, 5
    assert second.best_epoch == 1


def test_eval_interval_is_said_in_the_log(pieces):
    log = []
    _trainer(pieces, log, epochs=2, eval_interval=3).fit()
    assert any("validation every 3 epochs" in m for m in log), log


# ----------------------------------------------------------------------------- keep_checkpoints
def _names(folder):
    return sorted(p.name for p in (folder / CHECKPOINT_DIR).iterdir() if p.name.startswith("step-"))


@pytest.mark.parametrize("keep, left", [(1, 1), (3, 3), (None, 5)])
def test_checkpoints_beyond_keep_checkpoints_are_removed(pieces, tmp_path, keep, left):
    trainer = _trainer(pieces, keep_checkpoints=keep)
    saved = [save_checkpoint(tmp_path, trainer, TrainState(step=step, epoch=step)) for step in range(1, 6)]
    assert _names(tmp_path) == [p.name for p in saved[-left:]]  # the newest ones stay
    assert find_checkpoint(tmp_path) == saved[-1]
    remove_stale(tmp_path, count=keep)  # what --resume does: the same ones stay
    assert _names(tmp_path) == [p.name for p in saved[-left:]]


def test_resume_keeps_only_checkpoints_not_newer_than_the_one_it_resumes(pieces, tmp_path):
    trainer = _trainer(pieces, keep_checkpoints=3)
    saved = [save_checkpoint(tmp_path, trainer, TrainState(step=step, epoch=step)) for step in range(1, 4)]
    (tmp_path / CHECKPOINT_DIR / "LATEST").write_text(saved[1].name + "\n")  # killed before LATEST moved on
    remove_stale(tmp_path, count=3)
    assert _names(tmp_path) == [p.name for p in saved[:2]]


# ----------------------------------------------------------------------------- through a recipe
def test_a_recipe_with_all_three_runs_end_to_end(tmp_path):
    """``sparseft finetune`` with stage two, eval_interval 2 and keep_checkpoints 2: the history
    shows the switch and the validated epochs, two checkpoints stay, the learning curves plot the
    validated epochs."""
    import csv

    import ase.io

    from sparseft.plots import validated_points
    from sparseft.recipe import load_recipe
    from sparseft.run import run

    from ..finetune_data import recipe_text

    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), tmp_path / "tiny.model")
    ase.io.write(tmp_path / "data.xyz", emt_frames(10))
    settings = {
        "epochs": 5,
        "target_density": "null",
        "eval_interval": 2,
        "keep_checkpoints": 2,
        "scheduler": "constant",
    }
    (tmp_path / "r.yaml").write_text(recipe_text("tiny.model", "data.xyz", "out", swa="true", start_swa=3, **settings))
    metrics = run(load_recipe(tmp_path / "r.yaml"), quiet=True)
    history = list(csv.DictReader((tmp_path / "out" / "history.csv").open()))
    assert [float(r["lr"]) for r in history] == pytest.approx([0.01] * 3 + [1e-3] * 2)
    assert [r["epoch"] for r in history if r["valid_loss"]] == ["1", "3", "5"]
    assert metrics["best_epoch"] == 5  # the only validated stage-two epoch
    assert len(_names(tmp_path / "out")) == 2
    rows = [
        {"epoch": int(r["epoch"]), "valid_loss": float(r["valid_loss"]) if r["valid_loss"] else None} for r in history
    ]
    assert validated_points(rows, "valid_loss")[0] == [1, 3, 5]
    assert "stage two from epoch 4" in (tmp_path / "out" / "train.log").read_text()


def test_a_run_started_before_these_keys_resumes_without_a_recipe_change(tmp_path, capsys):
    """A ``recipe.yaml`` saved before ``eval_interval``, ``keep_checkpoints`` and ``swa*`` existed
    ran with their defaults: ``--resume`` is not refused over them."""
    import ase.io
    import yaml

    from sparseft.cli import main

    from ..finetune_data import recipe_text

    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), tmp_path / "tiny.model")
    ase.io.write(tmp_path / "data.xyz", emt_frames(10))
    (tmp_path / "r.yaml").write_text(recipe_text("tiny.model", "data.xyz", "out", epochs=1, target_density="null"))
    assert main(["finetune", str(tmp_path / "r.yaml"), "--quiet"]) == 0
    saved = yaml.safe_load((tmp_path / "out" / "recipe.yaml").read_text())
    for key in ("eval_interval", "keep_checkpoints", "swa", "start_swa", "swa_lr", "swa_energy_weight"):
        del saved["train"][key]
    (tmp_path / "out" / "recipe.yaml").write_text(yaml.safe_dump(saved))
    assert main(["finetune", str(tmp_path / "r.yaml"), "--resume", "--quiet"]) == 0, capsys.readouterr().err
    code = main(["finetune", str(tmp_path / "r.yaml"), "--resume", "--quiet", "--set", "train.swa_lr=0.5"])
    assert code == 2 and "train.swa_lr: 0.001 -> 0.5" in capsys.readouterr().err  # a real change still counts


def test_only_keys_whose_default_is_the_old_behaviour_are_filled_in():
    import dataclasses

    from sparseft.recipe import recipe_differences, with_defaults

    current = {"train": dataclasses.asdict(TrainSection(lr=0.01))}
    added = ("amsgrad", "eval_interval", "keep_checkpoints", "swa", "start_swa", "swa_lr", "swa_forces_weight")
    saved = {"train": {k: v for k, v in current["train"].items() if k not in added}}  # before those existed
    assert recipe_differences(with_defaults(saved), current) == ["train.amsgrad: '(absent)' -> True"]


# ----------------------------------------------------------------------------- loss
def test_huber_loss_is_mace_run_trains_on_the_same_batch():
    """``train.loss: huber`` equals mace-torch's ``WeightedHuberEnergyForcesStressLoss`` (the
    loss of ``mace_run_train --loss huber``, sevenn's fine-tuning loss too) on a batch with
    stress; the squared error is not it."""
    from mace.modules.loss import WeightedHuberEnergyForcesStressLoss

    from sparseft.core.graph import collate
    from sparseft.train.losses import loss_terms, pointwise, total_loss

    class Ref(dict):  # mace reads ref.ptr and ref["energy"]
        __getattr__ = dict.__getitem__

    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    model = wrap(copy.deepcopy(base), [SparseConfig(l1=0.1)])
    batch = collate(to_atomic_data(Frames("emt", emt_frames(4, stress=True), list(range(4))), model, Keys()))
    out = model(batch, training=False, compute_force=True, compute_stress=True)
    weights = {"energy": 3.0, "forces": 2.0, "stress": 5.0}
    for delta in (0.01, 0.5):
        expected = WeightedHuberEnergyForcesStressLoss(3.0, 2.0, 5.0, huber_delta=delta)(Ref(batch), out)
        got = total_loss(loss_terms(batch, out, error=pointwise("huber", delta)), weights)
        assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-5), delta
    assert float(total_loss(loss_terms(batch, out), weights).detach()) != pytest.approx(
        float(expected.detach()), rel=1e-2
    )
    assert (_train(loss="huber").loss, _train().loss, _train().huber_delta) == ("huber", "mse", 0.01)
    with pytest.raises(RecipeError, match="train.loss: 'l1' is not one of mse, huber"):
        _train(loss="l1")
    with pytest.raises(RecipeError, match="train.huber_delta: must be > 0, got 0"):
        _train(loss="huber", huber_delta=0)


def test_exponential_schedule_decays_once_an_epoch_after_warm_up(pieces):
    """``scheduler: exponential``: torch's ExponentialLR stepped after each epoch (sevenn's and
    mace_run_train's ``ExponentialLR``), counted from the end of the warm-up."""
    trainer = _trainer(pieces, scheduler="exponential", lr_gamma=0.5, warmup_epochs=1)
    seen = _record_steps(trainer)
    trainer.fit()
    lrs = [lr for _, lr, _ in seen]  # 4 epochs of 2 steps; the first epoch warms up
    assert lrs == pytest.approx([0.005, 0.01, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025])
    with pytest.raises(RecipeError, match="train.lr_gamma: must be > 0 and <= 1, got 1.5"):
        _train(scheduler="exponential", lr_gamma=1.5)
