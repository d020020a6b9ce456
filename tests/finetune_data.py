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


def multitask_frames(n: int = 24, seed: int = 0):
    """EMT frames that also carry a second level of theory (Lennard-Jones, ``LJ_*`` keys) and
    synthetic collinear moments (``REF_magmoms``: 0.4 on Au, plus 0.3 per Au neighbour and a
    smooth function of the neighbour distances; ``REF_total_magmom``). Labels are left out of some frames: no LJ
    labels on every third frame, no moments on every fourth, no EMT energy on every fifth."""
    from ase.calculators.lj import LennardJones
    from ase.neighborlist import neighbor_list

    frames = emt_frames(n, seed, stress=False)
    for i, atoms in enumerate(frames):
        if i % 3:
            lj = atoms.copy()
            lj.calc = LennardJones(sigma=2.3, epsilon=0.05, rc=4.5, smooth=True)
            atoms.info["LJ_energy"] = lj.get_potential_energy()
            atoms.arrays["LJ_forces"] = lj.get_forces()
        if i % 4:
            first, second, distance = neighbor_list("ijd", atoms, 3.0)
            smooth = np.bincount(first, weights=np.exp(-4 * (distance - 2.55) ** 2), minlength=len(atoms))
            au_neighbours = np.bincount(first, weights=(atoms.numbers[second] == 79), minlength=len(atoms))
            moments = 0.4 * (atoms.numbers == 79) + 0.3 * au_neighbours + 0.05 * smooth
            atoms.arrays["REF_magmoms"] = moments
            atoms.info["REF_total_magmom"] = float(moments.sum())
        if i % 5 == 0:
            del atoms.info["REF_energy"]
    return frames


MULTITASK_HEADS = """
heads:
  - name: lj
    kind: energy
    energy_key: LJ_energy
    forces_key: LJ_forces
    E0s: average
  - name: spin
    kind: magmom
    magmoms_weight: 100.0
"""
