"""Every recipe shipped in recipes/ parses and resolves its selectors on a MACE model."""

from __future__ import annotations

from pathlib import Path

import pytest

import sparseft as sf
from sparseft.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_parses_and_its_adapters_apply(path, make_model):
    recipe = load_recipe(path)
    adapted = sf.wrap(make_model(), recipe.adapters)
    assert adapted.num_trainable() > 0
