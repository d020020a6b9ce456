#!/usr/bin/env python
"""Generate and label the quick-start "domain" data set: Cu-Au fcc alloys, GFN1-xTB labels.

Structures
    Every structure is built on one fixed supercell: the 2x2x2 repeat of the conventional
    (cubic) fcc cell, 32 sites (31 with a vacancy).  tblite samples the Brillouin zone at
    Gamma only, and for a metal the Gamma-only energy of a small cell depends strongly on the
    cell's shape (Cu at a = 3.80 A, GFN1-xTB: -122.41 eV/atom for the 8-atom primitive 2x2x2
    cell, -124.41 for the 16-atom cubic 2x2x1, -124.58 for 27 atoms, -124.14 for the 32-atom
    cubic 2x2x2, -124.14 for the 108-atom cubic 3x3x3, -124.05 for 64 atoms).  Gamma-only on
    this one 32-atom cell is therefore part of the level of theory: not the converged bulk
    limit (up to ~0.1 eV/atom off it, more for Au than for Cu), but shared by every structure,
    so the labels are one consistent function of the structure.  No slabs: a (100) slab in
    this cell gets a negative Au surface energy (-0.02 eV/A^2; the sampling or GFN1-xTB
    itself, either way no label to train on).  Configuration types:

      bulk_Cu, bulk_Au       pure metals
      ordered_L12_Cu3Au, ordered_L10_CuAu, ordered_L12_CuAu3
      random_alloy           random substitution, x_Au uniform in [0.1, 0.9]
      vacancy                one site of a random alloy (x_Au in [0, 1]) removed: 31 atoms

    Lattice parameter from Vegard's law between the GFN1-xTB equilibria found with this
    cell (Cu 3.865 A, Au 4.27 A), then an isotropic strain of -3%..+4% in the lattice
    parameter, a random symmetric traceless strain (components in +-2%), and a Gaussian
    rattle of every Cartesian coordinate (sigma drawn per structure in 0.02..0.12 A).

Labels
    tblite GFN1-xTB through its ASE calculator: charge 0, no spin polarisation, multiplicity
    1 for an even and 2 for an odd number of electrons (Cu and Au both bring 11 valence
    electrons), electronic temperature 300 K (Fermi smearing), accuracy 1.0, Broyden mixing.
    Forces and stress match central finite differences of the energy (to 1e-5 eV/A and
    1e-6 eV/A^3 on a rattled 32-atom Cu cell).  A structure whose SCF does not converge is retried with a smaller mixer
    damping and more iterations (same level of theory), and dropped if it still fails.

    Written keys: REF_energy (eV, info), REF_forces (eV/A, arrays), REF_stress (eV/A^3,
    info, the full 3x3 tensor flattened to 9 numbers, ASE sign convention: positive =
    tensile; ASE 3.29 reads it back as that 9-vector, mace takes 9, 6 or 3x3),
    config_type (info).

Output: train.xyz / valid.xyz / test.xyz (about 70/15/15, stratified by config_type),
isolated_atoms.json (GFN1-xTB energies of the free atoms, same settings, doublets); the
numbers the README quotes go to <scratch>/stats.json.  Everything is seeded: the same command
writes the same files.  Needs tblite (pip install tblite; written with 0.8.0).

    OMP_NUM_THREADS=1 python scripts/make_domain_data.py            # about 8 min, 1 core
    python scripts/make_domain_data.py --n 12 --out /tmp/domain/try  # a quick try
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.io import write
from ase.stress import voigt_6_to_full_3x3_stress

METHOD = "GFN1-xTB"
ELECTRONIC_TEMPERATURE = 300.0  # K
ACCURACY = 1.0
VALENCE_ELECTRONS = {"Cu": 11, "Au": 11}  # GFN1-xTB valence shells: 3d10 4s1, 5d10 6s1
A0 = {"Cu": 3.865, "Au": 4.27}  # GFN1-xTB fcc equilibria, 2x2x2 cubic cell, Gamma only
REPEAT = 2  # the 2x2x2 conventional cell: 32 sites

# fraction of the structures of each configuration type
MIX = {
    "bulk_Cu": 0.14,
    "bulk_Au": 0.08,
    "ordered_L12_Cu3Au": 0.09,
    "ordered_L10_CuAu": 0.08,
    "ordered_L12_CuAu3": 0.06,
    "random_alloy": 0.40,
    "vacancy": 0.15,
}
# the four sites of the conventional fcc cell, in ase.build.bulk(cubic=True) order
# (0,0,0) (0,.5,.5) (.5,0,.5) (.5,.5,0); the symbols each ordered phase puts on them
ORDERED = {
    "ordered_L12_Cu3Au": ["Au", "Cu", "Cu", "Cu"],
    "ordered_L10_CuAu": ["Au", "Cu", "Cu", "Au"],  # Au layers at z = 0, Cu at z = 1/2
    "ordered_L12_CuAu3": ["Cu", "Au", "Au", "Au"],
}
SPLIT = (0.70, 0.15, 0.15)


def counts_for(n: int) -> dict[str, int]:
    raw = {k: v * n for k, v in MIX.items()}
    out = {k: int(np.floor(v)) for k, v in raw.items()}
    rest = n - sum(out.values())
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[:rest]:
        out[k] += 1
    return out


def build(config_type: str, rng: np.random.Generator) -> Atoms:
    """One unlabelled structure of the given type."""
    cell = bulk("Cu", "fcc", a=1.0, cubic=True)  # unit lattice; scaled below
    if config_type in ORDERED:
        cell.set_chemical_symbols(ORDERED[config_type])
    atoms = cell.repeat(REPEAT)
    n = len(atoms)
    if config_type == "bulk_Au":
        atoms.set_chemical_symbols(["Au"] * n)
    elif config_type in ("random_alloy", "vacancy"):
        lo, hi = (0.1, 0.9) if config_type == "random_alloy" else (0.0, 1.0)
        x = rng.uniform(lo, hi)
        n_au = int(round(x * n))
        symbols = np.array(["Cu"] * n, dtype=object)
        symbols[rng.choice(n, size=n_au, replace=False)] = "Au"
        atoms.set_chemical_symbols(list(symbols))

    x_au = atoms.get_chemical_symbols().count("Au") / n
    a = (1 - x_au) * A0["Cu"] + x_au * A0["Au"]
    a *= 1.0 + rng.uniform(-0.03, 0.04)
    atoms.set_cell(atoms.cell * a, scale_atoms=True)

    eps = rng.uniform(-0.02, 0.02, size=(3, 3))
    eps = 0.5 * (eps + eps.T)
    eps -= np.trace(eps) / 3 * np.eye(3)
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)

    if config_type == "vacancy":
        del atoms[int(rng.integers(n))]

    sigma = rng.uniform(0.02, 0.12)
    atoms.positions += rng.normal(0.0, sigma, size=atoms.positions.shape)
    atoms.wrap()
    atoms.pbc = True
    atoms.info["config_type"] = config_type
    return atoms


def multiplicity(atoms: Atoms) -> int:
    n_el = sum(VALENCE_ELECTRONS[s] for s in atoms.get_chemical_symbols())
    return 1 + n_el % 2


def calculator(atoms: Atoms, attempt: int = 0):
    from tblite.ase import TBLite

    kw = {}
    if attempt >= 1:  # same level of theory, gentler SCF
        kw = {"mixer_damping": 0.2 if attempt == 1 else 0.1, "max_iterations": 500 * attempt}
    return TBLite(
        method=METHOD,
        charge=0,
        multiplicity=multiplicity(atoms),
        electronic_temperature=ELECTRONIC_TEMPERATURE,
        accuracy=ACCURACY,
        verbosity=0,
        **kw,
    )


def label(atoms: Atoms, max_attempts: int = 3):
    """(energy, forces, stress 3x3 or None, attempts used) or None when the SCF fails."""
    for attempt in range(max_attempts):
        work = atoms.copy()
        work.calc = calculator(work, attempt)
        try:
            energy = work.get_potential_energy()
            forces = work.get_forces()
            stress = voigt_6_to_full_3x3_stress(work.get_stress())
        except Exception as exc:  # tblite raises on SCF failure
            print(f"    SCF attempt {attempt} failed: {str(exc).strip()[:120]}", flush=True)
            continue
        ok = np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()
        if ok:
            return energy, forces, stress, attempt + 1
        print(f"    attempt {attempt}: non-finite result", flush=True)
    return None


def isolated_atoms(elements) -> dict[str, float]:
    out = {}
    for el in elements:
        atom = Atoms(el, positions=[[0.0, 0.0, 0.0]], pbc=False)
        atom.calc = calculator(atom)
        out[el] = float(atom.get_potential_energy())
    return out


def split(frames, rng):
    """Stratified by config_type: about SPLIT of each type to train/valid/test."""
    parts = {"train": [], "valid": [], "test": []}
    types = sorted({f.info["config_type"] for f in frames})
    for t in types:
        idx = [i for i, f in enumerate(frames) if f.info["config_type"] == t]
        idx = list(rng.permutation(idx))
        n_valid = int(round(SPLIT[1] * len(idx)))
        n_test = int(round(SPLIT[2] * len(idx)))
        parts["valid"] += idx[:n_valid]
        parts["test"] += idx[n_valid : n_valid + n_test]
        parts["train"] += idx[n_valid + n_test :]
    return {k: [frames[i] for i in sorted(v)] for k, v in parts.items()}


def stats(frames, e0) -> dict:
    els = sorted(VALENCE_ELECTRONS)
    e = np.array([f.info["REF_energy"] for f in frames])
    nat = np.array([len(f) for f in frames])
    comp = np.array([[f.get_chemical_symbols().count(el) for el in els] for f in frames], float)
    fit, *_ = np.linalg.lstsq(comp, e, rcond=None)
    resid = e - comp @ fit
    coh = (e - comp @ np.array([e0[el] for el in els])) / nat
    fmag = np.concatenate([np.linalg.norm(f.arrays["REF_forces"], axis=1) for f in frames])
    fcomp = np.concatenate([f.arrays["REF_forces"].ravel() for f in frames])
    s = np.array([np.reshape(f.info["REF_stress"], (3, 3)) for f in frames]) * 160.21766208  # GPa
    press = -np.trace(s, axis1=1, axis2=2) / 3
    by_type = {}
    for t in sorted({f.info["config_type"] for f in frames}):
        sel = [i for i, f in enumerate(frames) if f.info["config_type"] == t]
        fm = np.concatenate([np.linalg.norm(frames[i].arrays["REF_forces"], axis=1) for i in sel])
        by_type[t] = {
            "count": len(sel),
            "energy_per_atom_mean": float((e[sel] / nat[sel]).mean()),
            "force_norm_mean": float(fm.mean()),
            "force_norm_max": float(fm.max()),
            "pressure_GPa_mean": float(press[sel].mean()),
        }
    return {
        "n_structures": len(frames),
        "n_atoms_total": int(nat.sum()),
        "atoms_per_structure": sorted({int(n) for n in nat}),
        "energy_per_atom_min": float((e / nat).min()),
        "energy_per_atom_max": float((e / nat).max()),
        "lstsq_energy_per_element": dict(zip(els, map(float, fit))),
        "lstsq_residual_per_atom_rms": float(np.sqrt(np.mean((resid / nat) ** 2))),
        "lstsq_residual_per_atom_maxabs": float(np.abs(resid / nat).max()),
        "cohesive_energy_per_atom_mean": float(-coh.mean()),
        "cohesive_energy_per_atom_range": [float(-coh.max()), float(-coh.min())],
        "force_component_rms": float(np.sqrt(np.mean(fcomp**2))),
        "force_norm_mean": float(fmag.mean()),
        "force_norm_max": float(fmag.max()),
        "force_component_maxabs": float(np.abs(fcomp).max()),
        "pressure_GPa_range": [float(press.min()), float(press.max())],
        "pressure_GPa_mean": float(press.mean()),
        "stress_component_GPa_maxabs": float(np.abs(s).max()),
        "by_config_type": by_type,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=220, help="structures to generate (before drops)")
    p.add_argument("--seed", type=int, default=20240611)
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "sparseft/embedded/domain"))
    p.add_argument("--scratch", default="/tmp/domain")
    args = p.parse_args(argv)

    try:
        import tblite.library
    except ImportError:
        sys.exit("make_domain_data.py needs tblite: pip install tblite")

    tblite_version = ".".join(map(str, tblite.library.get_version()))
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)

    # build everything first, so a dropped structure changes no other
    plan = [t for t, k in counts_for(args.n).items() for _ in range(k)]
    structures = [build(t, rng) for t in plan]
    split_rng = np.random.default_rng(args.seed + 1)

    e0 = isolated_atoms(sorted(VALENCE_ELECTRONS))
    print(f"tblite {tblite_version} {METHOD}; isolated atoms: {e0}", flush=True)

    frames, dropped, retried, times = [], [], 0, []
    t_start = time.perf_counter()
    for i, atoms in enumerate(structures):
        t0 = time.perf_counter()
        res = label(atoms)
        dt = time.perf_counter() - t0
        times.append(dt)
        if res is None:
            dropped.append((i, atoms.info["config_type"]))
            print(f"[{i + 1}/{len(structures)}] {atoms.info['config_type']}: DROPPED", flush=True)
            continue
        energy, forces, stress, attempts = res
        retried += attempts > 1
        a = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=True)
        a.info["config_type"] = atoms.info["config_type"]
        a.info["REF_energy"] = round(float(energy), 6)
        # 9 numbers (the symmetric 3x3, flattened): extxyz writes a flat vector; a (3, 3)
        # array would be written as a _JSON string instead
        a.info["REF_stress"] = np.round(stress, 8).reshape(9)
        a.arrays["REF_forces"] = np.round(forces, 6)
        frames.append(a)
        print(
            f"[{i + 1}/{len(structures)}] {a.info['config_type']:<18} {a.get_chemical_formula():<10} "
            f"E/atom {energy / len(a):9.4f}  max|F| {np.linalg.norm(forces, axis=1).max():5.2f}  "
            f"{dt:5.2f} s",
            flush=True,
        )
    total = time.perf_counter() - t_start
    write(scratch / "all.xyz", frames, format="extxyz")

    parts = split(frames, split_rng)
    for name, part in parts.items():
        write(out / f"{name}.xyz", part, format="extxyz")
    (out / "isolated_atoms.json").write_text(json.dumps(e0, indent=2) + "\n")

    st = stats(frames, e0)
    st.update(
        {
            "method": METHOD,
            "tblite_version": tblite_version,
            "electronic_temperature_K": ELECTRONIC_TEMPERATURE,
            "accuracy": ACCURACY,
            "seed": args.seed,
            "requested": args.n,
            "dropped": len(dropped),
            "dropped_structures": dropped,
            "needed_scf_retry": retried,
            "split_counts": {k: len(v) for k, v in parts.items()},
            "split_config_types": {
                k: {t: sum(f.info["config_type"] == t for f in v) for t in MIX} for k, v in parts.items()
            },
            "file_bytes": {f"{k}.xyz": (out / f"{k}.xyz").stat().st_size for k in parts},
            "isolated_atoms": e0,
            "label_seconds_total": total,
            "label_seconds_per_structure_mean": float(np.mean(times)),
            "label_seconds_per_structure_max": float(np.max(times)),
        }
    )
    (scratch / "stats.json").write_text(json.dumps(st, indent=2) + "\n")
    print(json.dumps(st, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
