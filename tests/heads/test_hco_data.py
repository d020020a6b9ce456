"""The shipped H/C/O spin-population data: labels are consistent, and a collinear head on a
tiny H/C/O model learns more than the per-element mean from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparseft._compat import torch
from sparseft.data import Keys, MagmomKeys, read_frames, validate
from sparseft.recipe import recipe_from_dict
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "hco_radicals"


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_spin_populations_sum_to_the_total_moment(split):
    frames = read_frames(DATA / f"{split}.xyz")
    validate(frames, [1, 6, 8], Keys(), extra=[MagmomKeys()])
    for i, atoms in enumerate(frames.atoms):
        assert atoms.arrays["REF_magmoms"].sum() == pytest.approx(atoms.info["REF_total_magmom"], abs=1e-6), i
        assert "REF_energy" not in atoms.info and atoms.calc is None  # no labels of another level of theory


@pytest.mark.slow
def test_tiny_model_head_beats_the_per_element_mean(tmp_path):
    torch.save(tiny_mace(atomic_numbers=(1, 6, 8), hidden_irreps="16x0e", r_max=4.0), tmp_path / "hco.model")
    recipe = recipe_from_dict(
        {
            "base": {"model": str(tmp_path / "hco.model")},
            "data": {
                "train": str(DATA / "train.xyz"),
                "valid": str(DATA / "valid.xyz"),
                "test": str(DATA / "test.xyz"),
                "energy_key": None,
                "forces_key": None,
                "stress_key": None,
                "virials_key": None,
            },
            "adapters": [],
            "heads": [{"name": "spin", "kind": "magmom", "constrain_total": True}],
            "train": {"lr": 0.01, "epochs": 20, "batch_size": 16},
            "output": {"directory": str(tmp_path / "out")},
        }
    )
    metrics = run(recipe, quiet=True)
    test, baseline = (
        metrics["splits"]["test"]["spin.magmoms_mae"],
        metrics["base_zero_shot"]["test"]["spin.magmoms_mae"],
    )
    assert 0.15 < baseline < 0.3  # the per-element mean (constrained to 2S)
    assert test < 0.75 * baseline
    assert np.isfinite(test)
