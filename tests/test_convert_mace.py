"""`sparseft convert-mace-args`: mace_run_train config/arguments -> an equivalent recipe that
loads, with what could not be mapped said."""

from __future__ import annotations

import yaml

from sparseft.cli import main
from sparseft.convert_mace import convert
from sparseft.recipe import load_recipe

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
                "ExponentialLR",
                "--not_an_option",
                "1",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "not mapped: swa=True: no sparseft equivalent" in err
    assert "not mapped: hidden_irreps: ignored; the architecture comes from the foundation model" in err
    assert "not mapped: scheduler=ExponentialLR" in err and "--not_an_option: not a mace_run_train argument" in err
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


def test_defaults_are_mace_defaults_and_freeze_is_explained():
    recipe, notes = convert(
        ["--foundation_model", "m.model", "--train_file", "t.xyz", "--freeze", "6", "--loss", "universal"]
    )
    assert recipe["train"]["lr"] == 0.01 and recipe["train"]["forces_weight"] == 100.0  # mace's, not sparseft's
    assert recipe["train"]["scheduler"] == "plateau"
    assert recipe["adapters"] == [{"method": "freeze", "select": {"kinds": ["readout"]}}]
    assert any(n.startswith("freeze=6") for n in notes) and any(n.startswith("loss=universal") for n in notes)
    assert "device" not in recipe["base"]
    yaml.safe_dump(recipe)  # plain YAML types
