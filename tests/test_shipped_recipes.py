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
