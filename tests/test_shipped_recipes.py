"""Every recipe shipped in recipes/ parses, resolves its selectors and builds its heads on a
MACE model."""

from __future__ import annotations

from pathlib import Path

import pytest

import sparseft as sf
from sparseft.heads import HeadedModel, build_from_config
from sparseft.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_parses_and_its_adapters_apply(path, make_model):
    recipe = load_recipe(path)
    adapted = HeadedModel(sf.wrap(make_model(), recipe.adapters, allow_empty=bool(recipe.heads)))
    for config in recipe.heads:
        adapted.add_head(build_from_config(config, adapted.base))
    assert adapted.num_trainable() > 0


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_sparse_l1_is_on_the_step_scale(path):
    """``l1`` is a fraction of an Adam step (scale-free): a value far below 0.01 does nothing
    (a MACE-MP-0 recipe once shipped 1e-4), far above 1 leaves almost nothing."""
    for adapter in load_recipe(path).adapters:
        if adapter.method == "sparse" and adapter.mode == "two_phase":
            assert 0.01 <= adapter.l1 <= 1.0, f"{path.name}: sparse l1 {adapter.l1} is off the step scale"
