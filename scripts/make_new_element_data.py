#!/usr/bin/env python
"""Generate and label the new-element example data: Co in fcc Cu, GFN1-xTB labels.

The embedded mini-foundation knows Al Ni Cu Pd Ag Pt Au, not Co; this small set is what
``recipes/embedded-add-cobalt.yaml`` fine-tunes it on, adding Co. Same cell, level of theory
and labelling code as the quick-start data (``scripts/make_domain_data.py``, imported here):
the 32-site 2x2x2 conventional fcc cell, tblite GFN1-xTB at Gamma, 300 K Fermi smearing,
no spin polarisation (multiplicity from the electron count; Co brings 9 valence electrons,
3d7 4s2), forces and stress.

Structures: ``dilute`` (1-3 Co on random sites), ``alloy`` (x_Co 0.1-0.3), ``vacancy`` (an
alloy with one site removed) and ``bulk_Cu`` (no Co: the structures a new-element-only fine-tune
must leave untouched). Lattice parameter Vegard-interpolated between GFN1-xTB-ish Cu (3.865 A)
and fcc Co (3.55 A), strained -3%..+4% isotropically plus a random traceless +-2%, rattled with
sigma 0.02-0.10 A. Output: ``examples/data/cu_co/train.xyz`` and ``test.xyz`` (keys
REF_energy, REF_forces, REF_stress, config_type) and ``isolated_atoms.json``; seeded.

    OMP_NUM_THREADS=1 python scripts/make_new_element_data.py     # a few minutes on one core
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import write

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_domain_data as domain  # noqa: E402  (the labelling settings, one place)

domain.VALENCE_ELECTRONS.update({"Co": 9})
A0 = {"Cu": 3.865, "Co": 3.55}
MIX = {"dilute": 0.35, "alloy": 0.30, "vacancy": 0.15, "bulk_Cu": 0.20}
OUT = Path(__file__).resolve().parents[1] / "examples" / "data" / "cu_co"


def build(config_type: str, rng: np.random.Generator) -> Atoms:
    """One unlabelled 32-site (31 with a vacancy) Cu-Co cell."""
    atoms = bulk("Cu", "fcc", a=1.0, cubic=True).repeat(domain.REPEAT)
    n = len(atoms)
    n_co = {"dilute": int(rng.integers(1, 4)), "bulk_Cu": 0}.get(config_type, int(round(rng.uniform(0.1, 0.3) * n)))
    symbols = np.array(["Cu"] * n, dtype=object)
    symbols[rng.choice(n, size=n_co, replace=False)] = "Co"
    atoms.set_chemical_symbols(list(symbols))
    x = n_co / n
    a = ((1 - x) * A0["Cu"] + x * A0["Co"]) * (1.0 + rng.uniform(-0.03, 0.04))
    atoms.set_cell(atoms.cell * a, scale_atoms=True)
    eps = rng.uniform(-0.02, 0.02, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    eps -= np.trace(eps) / 3 * np.eye(3)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    if config_type == "vacancy":
        del atoms[int(rng.integers(n))]
    atoms.positions += rng.normal(0.0, rng.uniform(0.02, 0.10), size=atoms.positions.shape)
    atoms.wrap()
    atoms.pbc = True
    atoms.info["config_type"] = config_type
    return atoms


def labelled(atoms: Atoms) -> Atoms | None:
    res = domain.label(atoms)
    if res is None:
        return None
    energy, forces, stress, _ = res
    a = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=True)
    a.info["config_type"] = atoms.info["config_type"]
    a.info["REF_energy"] = round(float(energy), 6)
    a.info["REF_stress"] = np.round(stress, 8).reshape(9)
    a.arrays["REF_forces"] = np.round(forces, 6)
    return a


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60)
    p.add_argument("--test", type=int, default=15)
    p.add_argument("--seed", type=int, default=20261201)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    counts = {k: int(round(v * args.n)) for k, v in MIX.items()}
    plan = [t for t, k in counts.items() for _ in range(k)]
    structures = [build(t, rng) for t in plan]
    frames = []
    for i, atoms in enumerate(structures):
        a = labelled(atoms)
        print(
            f"[{i + 1}/{len(structures)}] {atoms.info['config_type']:<8} {atoms.get_chemical_formula():<10} "
            + ("DROPPED" if a is None else f"E/atom {a.info['REF_energy'] / len(a):9.4f}"),
            flush=True,
        )
        if a is not None:
            frames.append(a)
    order = np.random.default_rng(args.seed + 1).permutation(len(frames))
    test = sorted(order[: args.test])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "train.xyz", [frames[i] for i in range(len(frames)) if i not in set(test)], format="extxyz")
    write(out / "test.xyz", [frames[i] for i in test], format="extxyz")
    (out / "isolated_atoms.json").write_text(json.dumps(domain.isolated_atoms(["Co", "Cu"]), indent=2) + "\n")
    print(f"{len(frames)} structures ({len(structures) - len(frames)} dropped) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
