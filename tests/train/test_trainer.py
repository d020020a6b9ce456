"""Training-loop behaviour: step budget, early stopping, support fixing, EMA, masked labels."""

from __future__ import annotations

import csv

import ase.io
import pytest

from sparseft import SparseConfig, wrap
from sparseft._compat import torch
from sparseft.recipe import TrainSection, load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace
from sparseft.train.trainer import Trainer, TrainState

from ..finetune_data import emt_frames, recipe_text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("trainer")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    frames = emt_frames(16)
    for atoms in frames[::3]:
        del atoms.info["REF_stress"]  # some frames carry no stress: masked, not an error
    ase.io.write(d / "data.xyz", frames)
    return d


def _run(workdir, name, evaluate_train=False, **train):
    path = workdir / f"{name}.yaml"
    path.write_text(recipe_text("tiny.model", "data.xyz", name, **train))
    recipe = load_recipe(path)
    recipe.output.evaluate_train = evaluate_train
    return run(recipe, quiet=True)


def test_max_steps_caps_training(workdir):
    metrics = _run(workdir, "steps", epochs=50, max_steps=5, target_density="null")
    assert metrics["steps"] == 5


def test_early_stopping_on_a_flat_validation_loss(workdir):
    metrics = _run(workdir, "patience", epochs=40, lr=1.0e-12, patience=1, target_density="null", scheduler="constant")
    assert metrics["epochs"] < 40


def test_support_is_fixed_at_the_target_density(workdir):
    metrics = _run(workdir, "density", epochs=4, target_density=0.05)
    assert metrics["changed_parameters"] == round(0.05 * metrics["selected_parameters"])


def test_ema_and_plateau_run(workdir):
    metrics = _run(
        workdir,
        "ema",
        evaluate_train=True,
        epochs=3,
        ema_decay=0.9,
        scheduler="plateau",
        optimizer="adamw",
        weight_decay=0.01,
    )
    assert metrics["splits"]["train"]["stress_mae"] is not None
    history = list(csv.DictReader((workdir / "ema" / "history.csv").open()))
    assert len(history) == 3
    assert all(float(row["lr"]) == pytest.approx(0.01) for row in history)  # plateau: no cosine decay


def _bare_trainer(**train):
    adapted = wrap(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), [SparseConfig()])
    return Trainer(adapted, [], [], TrainSection(**train), device="cpu", compute_stress=False, log=lambda _m: None)


def test_plateau_halves_the_rate_after_three_flat_epochs():
    trainer = _bare_trainer(scheduler="plateau", lr=0.01)
    state = TrainState()
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 1.0]):
        assert trainer.lr_at(0, state) == pytest.approx(0.01), epoch
        state.epoch = epoch + 1
        state.history.append({"train_loss": loss})
        trainer._after_epoch(state, {"loss": loss})
    assert trainer.lr_at(0, state) == pytest.approx(0.005)
    trainer._after_epoch(state, {"loss": 0.5})  # an improvement resets the count, not the rate
    assert state.plateau_bad == 0 and trainer.lr_at(0, state) == pytest.approx(0.005)


def test_ema_averages_and_is_what_evaluation_uses():
    trainer = _bare_trainer(ema_decay=0.5)
    (delta,) = trainer.params[:1]
    with torch.no_grad():
        delta.fill_(2.0)
    trainer.ema.update()  # shadow: 0.5 * 0 + 0.5 * 2
    assert torch.allclose(trainer.ema.shadow[0], torch.ones_like(delta))
    trainer.load_best()  # without validation: the EMA values
    assert torch.allclose(delta.detach(), torch.ones_like(delta))


@pytest.mark.parametrize("amsgrad", [True, False])
def test_amsgrad_reaches_the_optimiser_and_keeps_its_maximum(amsgrad):
    """``train.amsgrad`` (default on, mace_run_train's optimiser) sets Adam's variant; with it the
    second-moment maximum is state the checkpoint must carry."""
    trainer = _bare_trainer(amsgrad=amsgrad)
    assert all(g["amsgrad"] is amsgrad for g in trainer.optimizer.param_groups)
    p = trainer.params[0]
    p.grad = torch.ones_like(p)
    trainer.optimizer.step()
    assert ("max_exp_avg_sq" in trainer.optimizer.state[p]) is amsgrad


def test_amsgrad_is_on_by_default():
    assert TrainSection().amsgrad is True


def test_a_plain_adam_checkpoint_resumes_under_amsgrad(tmp_path):
    """A checkpoint written before ``train.amsgrad`` has no second-moment maximum: resuming it
    under AMSGrad starts the maximum at the saved second moment instead of failing in ``step``."""
    from sparseft.train.checkpoint import load_checkpoint, save_checkpoint

    old = _bare_trainer(amsgrad=False)
    for p in old.params:
        p.grad = torch.full_like(p, 0.5)
    old.optimizer.step()
    save_checkpoint(tmp_path, old, TrainState(step=1))
    new = _bare_trainer(amsgrad=True)
    load_checkpoint(tmp_path, new)
    p = new.params[0]
    saved = new.optimizer.state[p]
    assert torch.equal(saved["max_exp_avg_sq"], saved["exp_avg_sq"])
    p.grad = torch.full_like(p, 0.5)
    new.optimizer.step()  # raised KeyError('max_exp_avg_sq') before


def test_the_zero_shot_guard_prefers_epochs_no_worse_than_zero_shot():
    """Best epoch: among epochs no worse than the untouched model on validation energy and force
    MAE, the lowest loss; an epoch that regresses either only wins while none is that good."""
    trainer = _bare_trainer()
    state = TrainState(zero_shot={"energy_per_atom_mae": 1.0, "forces_mae": 1.0})
    epochs = [  # (loss, E MAE, F MAE) -> best epoch after it
        ((0.5, 1.2, 0.5), 1),  # worse energies than zero-shot, but the only epoch so far
        ((0.6, 0.9, 0.6), 2),  # no regression: wins although its loss is higher
        ((0.4, 1.1, 0.4), 2),  # lower loss, regressed energies: does not win
        ((0.55, 0.8, 0.5), 4),  # no regression and lower than epoch 2
    ]
    for epoch, ((loss, e, f), best) in enumerate(epochs, start=1):
        state.epoch = epoch
        state.history.append({"train_loss": loss})
        trainer._after_epoch(state, {"loss": loss, "energy_per_atom_mae": e, "forces_mae": f})
        assert state.best_epoch == best, epoch
    assert state.best_guarded and state.bad_epochs == 0


def test_the_zero_shot_guard_records_every_heads_validation_errors():
    """The guard holds every head to its zero-shot start (an energy head: the foundation with
    the head's initial E0s; a moment head: as it starts), not just the foundation head."""
    trainer = _bare_trainer()
    trainer.valid_data = [None]  # evaluate is replaced: only its presence matters
    valid = {
        "loss": 1.0,
        "energy_per_atom_mae": 1.0,
        "forces_mae": 1.0,
        "forces_rmse": 2.0,
        "lj.energy_per_atom_mae": 2.0,
        "lj.forces_mae": 3.0,
        "spin.magmoms_mae": 0.5,
    }
    trainer.evaluate = lambda data: valid
    state = trainer.fit(TrainState(done=True))  # records the zero-shot errors, trains nothing
    guarded = ("energy_per_atom_mae", "forces_mae", "lj.energy_per_atom_mae", "lj.forces_mae", "spin.magmoms_mae")
    assert state.zero_shot == {k: valid[k] for k in guarded}
    state.epoch = 1
    state.history.append({"train_loss": 0.5})
    trainer._after_epoch(state, {**valid, "loss": 0.5, "lj.energy_per_atom_mae": 10.0})  # the head regressed
    assert state.best_epoch == 1 and not state.best_guarded


def test_final_evaluation_counts_and_progress_and_quiet_keeps_results(workdir, capsys):
    """The final evaluation says how much it evaluates and, with stderr not a terminal, logs
    progress lines; --quiet hides those but never the final results."""
    path = workdir / "progress.yaml"
    path.write_text(recipe_text("tiny.model", "data.xyz", "progress", epochs=1, target_density="null"))
    recipe = load_recipe(path)
    recipe.output.progress_seconds = 1e-9  # a progress line at every batch
    lines = []
    run(recipe, log=lines.append, overwrite=True)
    assert any(line.startswith("final evaluation: valid 3 frames, test 3 frames") for line in lines), lines
    assert any(line.startswith("evaluating test: 2/2 batches") for line in lines), lines
    capsys.readouterr()
    run(load_recipe(path), quiet=True, overwrite=True)
    out = capsys.readouterr().out
    assert "force MAE" in out and "evaluating" not in out and "epoch" not in out


def test_without_the_guard_the_lowest_loss_wins():
    trainer = _bare_trainer(zero_shot_guard=False)
    state = TrainState()
    for epoch, (loss, e) in enumerate([(0.6, 0.9), (0.4, 1.5)], start=1):
        state.epoch = epoch
        state.history.append({"train_loss": loss})
        trainer._after_epoch(state, {"loss": loss, "energy_per_atom_mae": e, "forces_mae": 0.5})
    assert state.best_epoch == 2


def test_select_on_picks_the_best_epoch_by_that_validation_error():
    from sparseft.train import selection

    config = TrainSection(select_on="forces_mae", zero_shot_guard=False)
    state = TrainState()
    # epoch 1: lower loss, higher force error; epoch 2: the reverse
    for epoch, valid in enumerate([{"loss": 1.0, "forces_mae": 0.2}, {"loss": 2.0, "forces_mae": 0.1}]):
        state.epoch = epoch
        selection.judge_epoch(config, state, selection.selection_metric(config, valid, 9.9), valid, True)
    assert state.best_epoch == 1
    loss_config = TrainSection(zero_shot_guard=False)
    assert selection.selection_metric(loss_config, {"loss": 2.0, "forces_mae": 0.1}, 9.9) == 2.0
    assert selection.selection_metric(loss_config, {}, 9.9) == 9.9  # nothing validated: the training loss
    with pytest.raises(ValueError, match="train.select_on: stress_mae: no validation structure has stress labels"):
        selection.selection_metric(TrainSection(select_on="stress_mae"), {"loss": 1.0, "stress_mae": None}, 9.9)


def test_select_on_end_to_end_and_without_validation(workdir):
    metrics = _run(workdir, "select", epochs=4, target_density="null", select_on="forces_mae", zero_shot_guard="false")
    rows = list(csv.DictReader((workdir / "select" / "history.csv").open()))
    best = min(rows, key=lambda r: float(r["valid_forces_mae"]))
    assert metrics["best_epoch"] == int(best["epoch"])
    with pytest.raises(ValueError, match="train.select_on: forces_mae needs validation structures"):
        _bare_trainer(select_on="forces_mae")
    from sparseft.data import Keys
    from sparseft.predict import graphs

    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    frames = emt_frames(2)
    valid = graphs(frames, base, labels=Keys())
    for atoms in frames:
        del atoms.arrays["REF_forces"]

    def trainer_for(select_on, data, compute_stress=False):
        config = TrainSection(select_on=select_on, zero_shot_guard=False)
        adapted = wrap(base, [SparseConfig()])
        return Trainer(adapted, [], data, config, device="cpu", compute_stress=compute_stress, log=lambda _m: None)

    with pytest.raises(ValueError, match="train.select_on: forces_mae: no validation structure has forces labels"):
        trainer_for("forces_mae", graphs(frames, base, labels=Keys()))
    with pytest.raises(ValueError, match="train.select_on: stress_rmse: stress is not trained in this run"):
        trainer_for("stress_rmse", valid)
    trainer_for("stress_rmse", valid, compute_stress=True)
    # the trainer hands select_on's quantity to the judgement
    trainer = trainer_for("forces_mae", valid)
    state = TrainState()
    for epoch, valid in enumerate([{"loss": 1.0, "forces_mae": 0.2}, {"loss": 2.0, "forces_mae": 0.1}]):
        state.epoch = epoch
        state.history.append({"train_loss": 5.0})
        trainer._after_epoch(state, valid, True)
    assert state.best_epoch == 1
