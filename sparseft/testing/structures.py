"""Small deterministic test structures for a model's elements."""

from __future__ import annotations

import itertools

import ase
import numpy as np
from ase.geometry import cellpar_to_cell

MIN_DISTANCE = 1.1  # Å, closest allowed pair (periodic images included)
VOLUME_PER_ATOM = 12.0  # Å^3, density of the periodic cell
TRICLINIC_CELLPAR = (1.0, 1.1, 0.9, 76.0, 83.0, 104.0)  # relative lengths, angles in degrees


def default_structures(model, *, seed: int = 0) -> list[ase.Atoms]:
    """A non-periodic cluster and a triclinic periodic cell, each holding every element of ``model``.

    Each has ``max(8, n_elements)`` atoms, no pair closer than ``MIN_DISTANCE`` and every
    atom with neighbours well within ``model.r_max``. The same seed gives the same atoms.
    """
    numbers = sorted({int(z) for z in model.atomic_numbers})
    r_max = float(model.r_max)
    rng = np.random.default_rng(seed)
    n_atoms = max(8, len(numbers))
    return [
        random_cluster(_species(numbers, n_atoms, rng), r_max, rng),
        random_triclinic_cell(_species(numbers, n_atoms, rng), rng),
    ]


def _species(numbers: list[int], n_atoms: int, rng: np.random.Generator) -> np.ndarray:
    """Every element once, the rest drawn at random, in random order."""
    extra = rng.choice(numbers, size=n_atoms - len(numbers))
    return rng.permutation(np.concatenate([numbers, extra]).astype(int))


def random_cluster(numbers, r_max: float, rng: np.random.Generator) -> ase.Atoms:
    """Grow a connected cluster: each new atom bonds to a random earlier one.

    Bond lengths lie between ``MIN_DISTANCE`` and ``min(2.0, 0.6 * r_max)`` Å, so every
    atom has a neighbour inside the cutoff. The cluster is moved off the origin so that
    rotations about the origin also move it.
    """
    max_bond = max(min(2.0, 0.6 * r_max), 1.2 * MIN_DISTANCE)
    positions = [np.zeros(3)]
    while len(positions) < len(numbers):
        anchor = positions[rng.integers(len(positions))]
        direction = rng.normal(size=3)
        candidate = anchor + direction / np.linalg.norm(direction) * rng.uniform(1.05 * MIN_DISTANCE, max_bond)
        if np.min(np.linalg.norm(np.array(positions) - candidate, axis=1)) >= MIN_DISTANCE:
            positions.append(candidate)
    positions = np.array(positions)
    positions += np.array([1.7, -0.8, 2.3]) - positions.mean(axis=0)
    return ase.Atoms(numbers=numbers, positions=positions, pbc=False)


def random_triclinic_cell(numbers, rng: np.random.Generator) -> ase.Atoms:
    """Random positions in a fully periodic triclinic cell of ``VOLUME_PER_ATOM`` density."""
    cell = cellpar_to_cell(TRICLINIC_CELLPAR)
    cell *= (len(numbers) * VOLUME_PER_ATOM / abs(np.linalg.det(cell))) ** (1 / 3)
    images = np.array(list(itertools.product((-1, 0, 1), repeat=3))) @ cell
    positions = []
    while len(positions) < len(numbers):
        candidate = rng.uniform(size=3) @ cell
        if all(np.min(np.linalg.norm(p + images - candidate, axis=1)) >= MIN_DISTANCE for p in positions):
            positions.append(candidate)
    return ase.Atoms(numbers=numbers, positions=np.array(positions), cell=cell, pbc=True)
