"""Small EMT-labelled Cu/Au data and a tiny Cu/Au MACE model for fine-tuning tests."""

from __future__ import annotations

import numpy as np


def emt_frames(n: int = 24, seed: int = 0, stress: bool = True):
    """Rattled, strained fcc Cu cells with some Au, labelled by ASE's EMT under REF_* keys."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + rng.uniform(-0.1, 0.1), cubic=True)
        if i % 2:
            atoms[int(rng.integers(len(atoms)))].symbol = "Au"
        atoms.rattle(0.05, seed=seed * 1000 + i)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        if stress:
            atoms.info["REF_stress"] = atoms.get_stress(voigt=False)
        atoms.calc = None
        frames.append(atoms)
    return frames


def recipe_text(model: str, data: str, out: str, **train) -> str:
    settings = {"epochs": 4, "batch_size": 4, "lr": 0.01, "target_density": 0.2, **train}
    lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    return f"""
base:
  model: {model}
data:
  train: {data}
  valid_fraction: 0.2
  test_fraction: 0.2
  E0s: estimated
adapters:
  - method: sparse
    l1: 1.0e-3
train:
{lines}
output:
  directory: {out}
"""
