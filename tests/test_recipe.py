"""Recipe validation: every error names the recipe path."""

from __future__ import annotations

import pytest

from sparseft.recipe import RecipeError, apply_overrides, load_recipe, recipe_from_dict

MINIMAL = {"data": {"train": "t.xyz"}, "adapters": [{"method": "sparse"}]}


def _with(**sections):
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in MINIMAL.items()}
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value} if isinstance(value, dict) else value
    return data


@pytest.mark.parametrize(
    "sections,message",
    [
        (dict(train={"lrr": 1.0}), r"train: unknown key\(s\) \['lrr'\]; valid keys: optimizer, lr"),
        (dict(train={"lr": "fast"}), r"train.lr: expected a number, got str"),
        (dict(train={"epochs": 2.5}), r"train.epochs: expected an integer"),
        (dict(train={"optimizer": "sgd"}), r"train.optimizer: 'sgd' is not one of adam, adamw"),
        (dict(data={"E0s": "guess"}), r"data.E0s: 'guess' is not one of"),
        (
            dict(adapters=[{"method": "lora", "select": {"kinds": ["skp"]}}]),
            r"adapters\[0\].select.kinds: unknown kind",
        ),
        (dict(adapters=[{"method": "lora", "rnk": 2}]), r"adapters\[0\]: unknown key"),
        (dict(adapters=[{"rank": 2}]), r"adapters\[0\]: an adapter needs a 'method'"),
        (dict(extra={"a": 1}), r"unknown section\(s\) \['extra'\]"),
        (dict(train={"target_density": 2.0}), r"train.target_density: must be > 0 and <= 1"),
    ],
)
def test_bad_recipes_name_the_path(sections, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(_with(**sections))


def test_full_is_freeze_on_everything():
    recipe = recipe_from_dict(_with(adapters=[{"method": "full"}]))
    assert recipe.adapters[0].method == "freeze" and str(recipe.adapters[0].select) == "all"


def test_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    (tmp_path / "r.yaml").write_text("data: {train: t.xyz}\nadapters: [{method: sparse}]\ntrain: {lr: 1e-3}\n")
    assert load_recipe(tmp_path / "r.yaml").train.lr == 1e-3


def test_overrides_and_relative_paths(tmp_path):
    (tmp_path / "r.yaml").write_text("data: {train: t.xyz}\nadapters: [{method: sparse}]\n")
    recipe = load_recipe(tmp_path / "r.yaml", overrides=["train.lr=0.5", "output.directory=o"])
    assert recipe.train.lr == 0.5
    assert recipe.data.train == str(tmp_path / "t.xyz") and recipe.output.directory == str(tmp_path / "o")
    with pytest.raises(RecipeError, match="expected section.key=value"):
        apply_overrides({}, ["lr=1"])


def test_missing_and_broken_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "r.yaml").write_text("data: {train: t.xyz}\nadapters: [{method: sparse}]\ntrain: {lr: -1}\n")
    with pytest.raises(RecipeError, match=r"r.yaml: train.lr: must be > 0"):
        load_recipe(tmp_path / "r.yaml")


@pytest.mark.parametrize(
    "adapters, lr",
    [
        ([{"method": "sparse"}], 1e-2),
        ([{"method": "lora"}], 1e-2),
        ([{"method": "full"}], 1e-3),
        ([{"method": "sparse"}, {"method": "full", "select": {"kinds": ["readout"]}}], 1e-3),
    ],
)
def test_an_unset_lr_is_the_adapters_default(adapters, lr):
    """No ``train.lr``: the smallest ``default_lr`` of the adapters (parameter-efficient methods
    1e-2, full fine-tuning 1e-3), resolved at load so the saved recipe shows the rate used."""
    recipe = recipe_from_dict(_with(adapters=adapters))
    assert recipe.train.lr == lr
    assert recipe.to_dict()["train"]["lr"] == lr


def test_an_explicit_lr_is_kept():
    recipe = recipe_from_dict(_with(adapters=[{"method": "sparse"}], train={"lr": 3e-4}))
    assert recipe.train.lr == 3e-4
