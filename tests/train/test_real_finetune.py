"""Fine-tune a real xTB-trained MACE on a few frames of another level of theory (ECEMC)."""

from __future__ import annotations

import ase.io
import pytest

from sparseft.recipe import recipe_from_dict
from sparseft.run import run

pytestmark = pytest.mark.real


def test_real_model_error_goes_down_on_a_new_level_of_theory(real_dir, tmp_path):
    frames = [a for a in ase.io.read(real_dir / "data/mace_tutorial_solvent/ECEMC.xyz", ":") if len(a) > 1]
    ase.io.write(tmp_path / "train.xyz", frames[:8])
    ase.io.write(tmp_path / "test.xyz", frames[100:103])
    recipe = recipe_from_dict(
        {
            "base": {"model": str(real_dir / "models/mace_tutorial_ECEMC_xtb_mace01_swa.model"), "dtype": "float64"},
            "data": {
                "train": str(tmp_path / "train.xyz"),
                "test": str(tmp_path / "test.xyz"),
                "valid_fraction": 0.0,
                "energy_key": "energy",
                "forces_key": "forces",
                "virials_key": "virial",
                "E0s": "estimated",
            },
            "adapters": [{"method": "sparse", "l1": 0.1}],
            "train": {
                "epochs": 8,
                "batch_size": 2,
                "lr": 0.002,
                "scheduler": "constant",
                "stress_weight": 0.0,
                "energy_weight": 100.0,
            },
            "output": {"directory": str(tmp_path / "out")},
        }
    )
    metrics = run(recipe, quiet=True)
    tuned, zero = metrics["splits"]["test"], metrics["base_zero_shot"]["test"]
    assert tuned["forces_mae"] < 0.7 * zero["forces_mae"]  # measured: 154 vs 327 meV/Å
    # the zero-shot baseline already has E0s refitted on these frames (9.5 meV/atom); keep it
    assert tuned["energy_per_atom_mae"] < 1.2 * zero["energy_per_atom_mae"]
