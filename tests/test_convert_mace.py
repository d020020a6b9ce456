"""`sparseft convert-mace-args`: mace_run_train config/arguments -> an equivalent recipe that
loads, with what could not be mapped said."""

from __future__ import annotations

import pytest
import yaml

from sparseft.backends.mace.convert import convert
from sparseft.cli import main
from sparseft.recipe import RecipeError, load_recipe, recipe_from_dict

CONFIG = """
name: cu_ft
foundation_model: mace-mp-0-medium.model
train_file: train.xyz
valid_fraction: 0.05
energy_key: energy_dft
forces_key: forces_dft
E0s: "{29: -0.5, 79: -0.25}"
config_type_weights: '{"Default": 1.0, "surface": 3.0}'
lr: 0.001
max_num_epochs: 50
batch_size: 4
forces_weight: 50
ema: true
ema_decay: 0.99
lora: true
lora_rank: 8
swa: true
hidden_irreps: 128x0e+128x1o
"""


def test_config_file_and_arguments_become_a_recipe(tmp_path, capsys):
    (tmp_path / "mace.yaml").write_text(CONFIG)
    out = tmp_path / "recipe.yaml"
    assert (
        main(
            [
                "convert-mace-args",
                str(tmp_path / "mace.yaml"),
                "-o",
                str(out),
                "--",
                "--seed",
                "7",
                "--scheduler",
                "CosineAnnealingLR",
                "--not_an_option",
                "1",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "swa" not in err  # stage two maps (train.swa)
    assert "not mapped: hidden_irreps: ignored; the architecture comes from the foundation model" in err
    assert "not mapped: scheduler=CosineAnnealingLR" in err and "--not_an_option: not a mace_run_train argument" in err
    assert "multiheads_finetuning" in err
    recipe = load_recipe(out)
    assert recipe.base.model == str(tmp_path / "mace-mp-0-medium.model")
    assert recipe.data.train == str(tmp_path / "train.xyz") and recipe.data.valid_fraction == 0.05
    assert (recipe.data.energy_key, recipe.data.forces_key) == ("energy_dft", "forces_dft")
    assert recipe.data.E0s == {29: -0.5, 79: -0.25}
    assert recipe.data.config_type_weights == {"Default": 1.0, "surface": 3.0}
    assert [a.method for a in recipe.adapters] == ["lora"] and recipe.adapters[0].rank == 8
    t = recipe.train
    assert (t.lr, t.epochs, t.batch_size, t.forces_weight, t.ema_decay, t.seed) == (0.001, 50, 4, 50.0, 0.99, 7)
    assert t.stress_weight == 0.0  # mace's default loss (weighted) trains energy and forces only
    assert recipe.output.directory.endswith("cu_ft-sparseft")
    assert t.swa and t.start_swa is None and t.swa_lr == 1e-3  # mace's defaults
    assert (t.swa_energy_weight, t.swa_forces_weight, t.swa_stress_weight) == (1000.0, 100.0, 0.0)  # no stress loss


def test_stage_two_eval_interval_and_checkpoints_map():
    """mace's --swa (alias --stage_two) and friends, --eval_interval and --keep_checkpoints become
    train keys, with nothing reported as unmapped."""
    argv = ["--foundation_model", "m.model", "--train_file", "t.xyz", "--max_num_epochs", "40", "--loss", "stress"]
    argv += ["--stage_two", "--start_swa", "30", "--swa_lr", "1e-4", "--swa_energy_weight", "500"]
    argv += ["--swa_forces_weight", "20", "--swa_stress_weight", "2", "--eval_interval", "5", "--keep_checkpoints"]
    recipe, notes = convert(argv)
    train = recipe["train"]
    assert train["swa"] is True and (train["start_swa"], train["swa_lr"]) == (30, 1e-4)
    assert (train["swa_energy_weight"], train["swa_forces_weight"], train["swa_stress_weight"]) == (500.0, 20.0, 2.0)
    assert train["eval_interval"] == 5 and train["keep_checkpoints"] is None  # mace keeps all of them
    assert not [n for n in notes if "swa" in n or "eval_interval" in n or "checkpoints" in n], notes
    recipe_from_dict(recipe)  # a valid recipe


def test_without_swa_no_stage_two_keys_are_written():
    recipe, notes = convert(["--foundation_model", "m.model", "--train_file", "t.xyz", "--save_all_checkpoints"])
    assert not any(key.startswith("swa") or key == "start_swa" for key in recipe["train"])
    assert recipe["train"]["keep_checkpoints"] is None and recipe["train"]["eval_interval"] == 1  # mace's default
    recipe, notes = convert(["--train_file", "t.xyz", "--swa_lr", "1e-4"])
    assert "swa_lr" not in recipe["train"] and "swa_lr: ignored without --swa (as by mace_run_train)" in notes


def test_stage_two_that_never_starts_is_said():
    recipe, notes = convert(["--train_file", "t.xyz", "--max_num_epochs", "10", "--swa", "--start_swa", "10"])
    with pytest.raises(RecipeError, match="train.start_swa: must be < train.epochs"):
        recipe_from_dict(recipe)


def test_defaults_are_mace_defaults_and_freeze_is_explained():
    recipe, notes = convert(
        ["--foundation_model", "m.model", "--train_file", "t.xyz", "--freeze", "6", "--loss", "universal"]
    )
    assert recipe["train"]["lr"] == 0.01 and recipe["train"]["forces_weight"] == 100.0  # mace's, not sparseft's
    assert recipe["train"]["scheduler"] == "plateau"
    assert recipe["adapters"] == [{"method": "freeze", "select": {"kinds": ["readout"]}}]
    assert any(n.startswith("freeze=6") for n in notes) and any(n.startswith("loss=universal") for n in notes)
    assert (recipe["train"]["loss"], recipe["train"]["huber_delta"]) == ("huber", 0.01)  # mace's default delta
    assert "device" not in recipe["base"]
    yaml.safe_dump(recipe)  # plain YAML types


def test_huber_loss_and_its_delta_map():
    recipe, notes = convert(["--train_file", "t.xyz", "--loss", "huber", "--huber_delta", "0.05"])
    assert (recipe["train"]["loss"], recipe["train"]["huber_delta"]) == ("huber", 0.05)
    assert recipe["train"]["stress_weight"] > 0  # mace's huber trains stress
    assert not any("loss" in n or "huber" in n for n in notes), notes
    recipe_from_dict(recipe)
    recipe, notes = convert(["--train_file", "t.xyz", "--loss", "l1l2energyforces"])
    assert "loss" not in recipe["train"] and any(n.startswith("loss=l1l2energyforces") for n in notes)


def test_exponential_lr_maps_with_its_gamma():
    recipe, notes = convert(["--train_file", "t.xyz", "--scheduler", "ExponentialLR", "--lr_scheduler_gamma", "0.99"])
    assert (recipe["train"]["scheduler"], recipe["train"]["lr_gamma"]) == ("exponential", 0.99)
    assert not any("scheduler" in n for n in notes), notes
    recipe_from_dict(recipe)
