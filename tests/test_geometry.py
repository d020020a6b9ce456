"""Neighbour-list bounds (issue 21 item 6): estimates that refuse exploding frames and pass real ones.

The refusals themselves (file, frame, estimate) are in the bad-input corpus.
"""

from __future__ import annotations

import contextlib
import resource

import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list

from sparseft.geometry import StructureError, check_neighbours, check_structure, neighbours_per_atom


@contextlib.contextmanager
def _address_space(extra_bytes: int):
    """At most ``extra_bytes`` more virtual memory than now (the soft limit, restored after)."""
    with open("/proc/self/status") as f:
        now = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (now + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize(
    "atoms", [bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2), bulk("C", "diamond", a=3.57), molecule("C6H6")]
)
def test_the_estimate_is_near_the_real_neighbour_count(atoms):
    cutoff = 5.0
    if not atoms.pbc.any():
        atoms.center(vacuum=0)
    real = len(neighbor_list("i", atoms, cutoff)) / len(atoms)
    estimate, _ = neighbours_per_atom(atoms, cutoff)
    assert real / 3 < estimate < real * 3, (real, estimate)


@pytest.mark.parametrize(
    "atoms",
    [
        bulk("Cu", "fcc", a=3.6, cubic=True) * (6, 6, 6),  # 864 atoms
        Atoms("Cu2", positions=[[0, 0, 0], [300, 0, 0]]),  # a 300 Å molecule: mace's grid is ~3.4 GB, allowed
        fcc111("Cu", (2, 2, 4), vacuum=10.0),  # a slab, periodic in two directions
    ],
)
def test_real_structures_pass(atoms):
    check_neighbours(atoms, 6.0)


def test_the_coincident_atom_check_of_a_large_cell_needs_little_memory():
    """A 0.1 Å search grid over a 1000 Å cell was 1e9 cells (7.5 GB, 17 s) before any model ran."""
    atoms = Atoms("Cu2", positions=[[1, 1, 1], [3, 1, 1]], cell=[1000.0] * 3, pbc=True)
    with _address_space(1 << 30):
        check_structure(atoms)
        atoms.positions[1] = [1.05, 1, 1]
        with pytest.raises(StructureError, match="atoms 0 and 1 are 0.050 Å apart"):
            check_structure(atoms)
