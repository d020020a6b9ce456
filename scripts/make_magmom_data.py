#!/usr/bin/env python
"""Generate the H/C/O magnetic-moment data set: rattled small radicals, UKS-B3LYP spin populations.

Structures
    20 small neutral H/C/O molecules in the gas phase (no cell, pbc False):
      doublets  CH3, OH, HO2, HCO, CH3O (methoxy), CH2OH (hydroxymethyl), C2H5, C2H3 (vinyl),
                CH3CO (acetyl), HOCO (trans-hydroxycarbonyl), CH2CHO (vinoxy),
                CH3OO (methylperoxy), C3H5 (allyl), CH3CH2O (ethoxy)
      triplets  CH2 (3B1), O2 (3Sigma_g-)
      singlets  H2O, CH4, CH3OH, H2CO (closed shell: every spin population is zero)
    Geometries from ase.build.molecule (the G2 set) where it has the molecule (its initial
    magnetic moments are checked against the 2S used here); HO2, HOCO, vinoxy, CH3OO and allyl
    are built from a Z-matrix with literature-like bond lengths and angles (see MANUAL below).
    Formyloxyl (HCOO) was tried and left out: it has several near-degenerate doublet states
    (2A1, 2B2, 2A2), and UKS landed on different ones from frame to frame (spin on H, on one O
    or on both O), which is no smooth function of the geometry to learn.
    Each frame is the reference geometry with every Cartesian coordinate displaced by a
    Gaussian of standard deviation sigma, sigma drawn per frame uniformly in 0.05..0.08 A;
    a draw with any interatomic distance below 0.7 A is redrawn.  18 frames per open-shell
    and 12 per closed-shell molecule: 336 frames.

Labels (level of theory)
    Spin-unrestricted Kohn-Sham DFT with PySCF: UKS, B3LYP (xc "B3LYPG": libxc 402, the
    VWN-RPA variant used by Gaussian, chosen explicitly so a local PySCF setting cannot switch
    it to VWN5), def2-SVP basis, no density fitting, DFT grid level 2, charge 0, 2S = number of
    unpaired electrons given per molecule (multiplicity 2S + 1), SCF conv_tol 1e-9 Ha, DIIS
    (max 100 cycles), then second-order (Newton) SCF from the last density if DIIS did not
    converge.  A frame that still does not converge is skipped and listed on stdout and in
    the README, never kept.  No stability analysis: the SCF solution reached from PySCF's
    default (minao) guess is the label.

    Per atom, from the spin density matrix P = P_alpha - P_beta and the AO overlap S:
      REF_magmoms         Mulliken spin population, sum over the atom's AOs of (P S)_mm
      REF_magmoms_lowdin  Loewdin spin population, sum over the atom's AOs of (S^1/2 P S^1/2)_mm
    in Bohr magnetons (mu_B, spin-only: n_alpha - n_beta electrons on the atom).  Both sum
    over the atoms to exactly 2S (up to numerical precision; the script checks 1e-6).
    Per frame (info): REF_total_magmom (= 2S), multiplicity, molecule, level_of_theory,
    dft_energy (total UKS energy, eV; NOT named REF_energy: a different level of theory from
    the xTB-trained model), s2 (<S^2> of the Kohn-Sham determinant: spin contamination),
    rattle_sigma (A).  No energies or forces under REF_* keys.

Output
    train.xyz / valid.xyz / test.xyz (extxyz, split per molecule with a fixed seed: 12/3/3
    frames of each open-shell and 8/2/2 of each closed-shell molecule, so every molecule is in
    every split) and README.md (counts, per-element |magmom| statistics, the per-element-mean
    baseline).  Every file is written to a temporary file in the output folder and moved into
    place with os.replace; existing files are refused unless --overwrite is given.
    Everything is seeded (--seed, default 0): the same command writes the same files (up to
    the last digits, with a different BLAS or thread count).

    OMP_NUM_THREADS=1 python scripts/make_magmom_data.py   # 336 frames, 10-20 min on 1 core
    python scripts/make_magmom_data.py --frames-open 3 --frames-closed 3 --out /tmp/mm  # try

Timing: the full 336-frame run took 19.5 min wall (10.0 min CPU, 1 thread) on a shared 2-core
machine; per frame from 0.2 s (OH) to 14 s (ethoxy) on average.  Needs PySCF (pip install
pyscf, or pip install -e '.[data]'; written with PySCF 2.14.0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import molecule as g2_molecule
from ase.io import read, write

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "examples" / "data" / "hco_radicals"

XC, BASIS, GRID_LEVEL, CONV_TOL, MAX_CYCLE = "B3LYPG", "def2-SVP", 2, 1e-9, 100
SIGMA_RANGE, MIN_DIST = (0.05, 0.08), 0.7
SPLIT_FRACTIONS = (0.15, 0.15)  # valid, test (per molecule, rounded); the rest is train

# name -> (2S, source): "g2" = ase.build.molecule(g2_name), or a Z-matrix (see zmatrix()).
# Z-matrix rows: (symbol, bonded_to, bond_A, angle_to, angle_deg, dihedral_to, dihedral_deg).
MANUAL = {
    # HO2 (2A''): O-O 1.331, O-H 0.971, H-O-O 104.3
    "HO2": [("O",), ("O", 0, 1.331), ("H", 0, 0.971, 1, 104.3)],
    # trans-HOCO (hydroxycarbonyl, 2A'): C=O 1.18, C-O 1.34, O-C-O 127, O-H 0.97, C-O-H 108
    "HOCO": [("C",), ("O", 0, 1.18), ("O", 0, 1.34, 1, 127.0), ("H", 2, 0.97, 0, 108.0, 1, 180.0)],
    # vinoxy CH2CHO (planar, 2A''): C-C 1.40, C-O 1.25, C-C-O 123, C-H 1.08-1.10
    "CH2CHO": [
        ("C",),
        ("C", 0, 1.40),
        ("O", 1, 1.25, 0, 123.0),
        ("H", 1, 1.10, 0, 117.0, 2, 180.0),
        ("H", 0, 1.08, 1, 121.0, 2, 0.0),
        ("H", 0, 1.08, 1, 120.0, 2, 180.0),
    ],
    # methylperoxy CH3OO (Cs): O-O 1.326, C-O 1.449, C-O-O 110.6, C-H 1.09
    "CH3OO": [
        ("O",),
        ("O", 0, 1.326),
        ("C", 0, 1.449, 1, 110.6),
        ("H", 2, 1.090, 0, 104.8, 1, 180.0),
        ("H", 2, 1.093, 0, 110.5, 1, 61.0),
        ("H", 2, 1.093, 0, 110.5, 1, -61.0),
    ],
    # allyl C3H5 (C2v, planar): C-C 1.385, C-C-C 124, C-H 1.08
    "C3H5": [
        ("C",),
        ("C", 0, 1.385),
        ("C", 0, 1.385, 1, 124.0),
        ("H", 0, 1.087, 1, 118.0, 2, 180.0),
        ("H", 1, 1.083, 0, 121.5, 2, 0.0),
        ("H", 1, 1.081, 0, 121.0, 2, 180.0),
        ("H", 2, 1.083, 0, 121.5, 1, 0.0),
        ("H", 2, 1.081, 0, 121.0, 1, 180.0),
    ],
}
# name -> (2S, G2 name or None for MANUAL)
MOLECULES = {
    "CH3": (1, "CH3"),
    "OH": (1, "OH"),
    "HO2": (1, None),
    "HCO": (1, "HCO"),
    "CH3O": (1, "CH3O"),
    "CH2OH": (1, "H2COH"),
    "C2H5": (1, "C2H5"),
    "C2H3": (1, "C2H3"),
    "CH3CO": (1, "CH3CO"),
    "HOCO": (1, None),
    "CH2CHO": (1, None),
    "CH3OO": (1, None),
    "C3H5": (1, None),
    "CH3CH2O": (1, "CH3CH2O"),
    "CH2_triplet": (2, "CH2_s3B1d"),
    "O2": (2, "O2"),
    "H2O": (0, "H2O"),
    "CH4": (0, "CH4"),
    "CH3OH": (0, "CH3OH"),
    "H2CO": (0, "H2CO"),
}


def zmatrix(rows) -> Atoms:
    """Cartesian positions from Z-matrix rows (bond A, angles in degrees, 0-based references)."""
    pos: list[np.ndarray] = []
    for row in rows:
        if len(row) == 1:
            pos.append(np.zeros(3))
            continue
        i, r = row[1], row[2]
        if len(row) == 3:
            pos.append(pos[i] + [r, 0.0, 0.0])
            continue
        j, theta = row[3], np.radians(row[4])
        if len(row) == 5:  # third atom: in the xy plane
            k_pos, phi = pos[j] + [0.0, 1.0, 0.0], 0.0
        else:
            k_pos, phi = pos[row[5]], np.radians(row[6])
        c, b = pos[i], pos[j]
        bc = (c - b) / np.linalg.norm(c - b)
        n = np.cross(b - k_pos, bc)
        n /= np.linalg.norm(n)
        m = np.cross(n, bc)
        d = [-r * np.cos(theta), r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi)]
        pos.append(c + d[0] * bc + d[1] * m + d[2] * n)
    return Atoms([row[0] for row in rows], positions=np.array(pos))


def reference_geometry(name: str) -> Atoms:
    two_s, g2 = MOLECULES[name]
    if g2 is None:
        atoms = zmatrix(MANUAL[name])
    else:
        atoms = g2_molecule(g2)
        g2_two_s = atoms.get_initial_magnetic_moments().sum()
        assert abs(g2_two_s - two_s) < 1e-9, (name, g2_two_s, two_s)
    if (sum(atoms.numbers) - two_s) % 2:
        raise ValueError(f"{name}: 2S={two_s} has the wrong parity for {sum(atoms.numbers)} electrons")
    atoms = Atoms(atoms.get_chemical_symbols(), positions=atoms.positions - atoms.positions.mean(0))
    return atoms  # fresh Atoms: no initial_magmoms, no cell, pbc False


def rattled(ref: Atoms, rng: np.random.Generator) -> tuple[Atoms, float]:
    sigma = float(rng.uniform(*SIGMA_RANGE))
    while True:
        atoms = ref.copy()
        atoms.positions += rng.normal(0.0, sigma, size=atoms.positions.shape)
        d = atoms.get_all_distances()[np.triu_indices(len(atoms), 1)]
        if len(d) == 0 or d.min() >= MIN_DIST:
            return atoms, sigma


def uks(atoms: Atoms, two_s: int):
    """Converged PySCF UKS object, or None when neither DIIS nor Newton converges."""
    from pyscf import dft, gto

    mol = gto.M(
        atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)],
        unit="Angstrom",
        basis=BASIS,
        charge=0,
        spin=two_s,
        verbose=0,
    )
    mf = dft.UKS(mol)
    mf.xc, mf.grids.level, mf.conv_tol, mf.max_cycle = XC, GRID_LEVEL, CONV_TOL, MAX_CYCLE
    mf.kernel()
    if not mf.converged:
        newton = mf.newton()
        newton.kernel(dm0=mf.make_rdm1())
        mf = newton
    return mf if mf.converged else None


def spin_populations(mf) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom Mulliken and Loewdin spin populations (n_alpha - n_beta) of a UKS solution."""
    dm_a, dm_b = mf.make_rdm1()
    p = dm_a - dm_b
    s = mf.get_ovlp()
    w, v = np.linalg.eigh(s)
    s_half = (v * np.sqrt(w)) @ v.T
    mulliken_ao = np.einsum("ij,ji->i", p, s)
    lowdin_ao = np.diag(s_half @ p @ s_half)
    ao_atom = np.array([label[0] for label in mf.mol.ao_labels(fmt=False)])
    n = mf.mol.natm
    return (np.bincount(ao_atom, mulliken_ao, minlength=n), np.bincount(ao_atom, lowdin_ao, minlength=n))


def label(atoms: Atoms, name: str, two_s: int, sigma: float, level: str):
    from ase.units import Hartree

    mf = uks(atoms, two_s)
    if mf is None:
        return None
    mull, lowd = spin_populations(mf)
    for pops in (mull, lowd):
        if abs(pops.sum() - two_s) > 1e-6:
            raise RuntimeError(f"{name}: spin populations sum to {pops.sum()}, not 2S={two_s}")
    atoms = atoms.copy()
    atoms.new_array("REF_magmoms", mull)
    atoms.new_array("REF_magmoms_lowdin", lowd)
    atoms.info.update(
        molecule=name,
        multiplicity=two_s + 1,
        REF_total_magmom=float(two_s),
        level_of_theory=level,
        dft_energy=float(mf.e_tot * Hartree),
        s2=float(mf.spin_square()[0]),
        rattle_sigma=round(sigma, 4),
    )
    return atoms


def split_counts(n: int) -> tuple[int, int, int]:
    n_valid = max(1, round(SPLIT_FRACTIONS[0] * n))
    n_test = max(1, round(SPLIT_FRACTIONS[1] * n))
    return n - n_valid - n_test, n_valid, n_test


def split(frames_by_molecule: dict, rng: np.random.Generator) -> dict[str, list[Atoms]]:
    out = {"train": [], "valid": [], "test": []}
    for name, frames in frames_by_molecule.items():
        if len(frames) < 3:
            raise RuntimeError(f"{name}: only {len(frames)} converged frames, need 3 for the split")
        order = rng.permutation(len(frames))
        n_train, n_valid, _ = split_counts(len(frames))
        for i, j in enumerate(order):
            key = "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
            out[key].append(frames[j])
    return out


def per_element(frames, key="REF_magmoms") -> dict[str, np.ndarray]:
    vals: dict[str, list] = {}
    for a in frames:
        for s, m in zip(a.get_chemical_symbols(), a.arrays[key]):
            vals.setdefault(s, []).append(m)
    return {s: np.array(v) for s, v in sorted(vals.items())}


def baseline_mae(train, test, key="REF_magmoms") -> tuple[dict, float, float]:
    """Per-element mean of the signed moment on train; per-atom MAE of that on test (and of 0)."""
    means = {s: float(v.mean()) for s, v in per_element(train, key).items()}
    err, ref = [], []
    for a in test:
        pred = np.array([means[s] for s in a.get_chemical_symbols()])
        err.extend(np.abs(a.arrays[key] - pred))
        ref.extend(np.abs(a.arrays[key]))
    return means, float(np.mean(err)), float(np.mean(ref))


def write_atomic(path: Path, writer) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def readme(splits, skipped, level, command) -> str:
    frames = splits["train"] + splits["valid"] + splits["test"]
    names = list(MOLECULES)
    lines = [
        "# hco_radicals: per-atom magnetic moments of small H/C/O radicals",
        "",
        f"{len(frames)} rattled geometries of {len(names)} small neutral gas-phase H/C/O molecules "
        "(mostly open-shell radicals, plus a few closed-shell molecules whose moments are all zero), "
        "labelled with per-atom spin populations for a collinear magnetic-moment head. Elements: "
        "H, C, O. Non-periodic (`pbc` False, no cell).",
        "",
        "## Level of theory",
        "",
        f"- `{level}`",
        f"- Spin-unrestricted Kohn-Sham (UKS), B3LYP (PySCF xc `{XC}`: libxc 402, the VWN-RPA variant "
        f"as in Gaussian), basis {BASIS}, no density fitting, DFT grid level {GRID_LEVEL}, charge 0, "
        f"SCF conv_tol {CONV_TOL:g} Ha (DIIS, then Newton if needed; unconverged frames are dropped, "
        "never kept). No stability analysis.",
        "- Multiplicity 2S+1 with 2S the number of unpaired electrons (doublet radicals, triplet CH2 "
        "and O2, singlet closed-shell molecules).",
        "- Spin-population scheme: `REF_magmoms` = Mulliken spin population per atom, "
        "sum over the atom's AOs of (P S)_mm with P = P_alpha - P_beta; `REF_magmoms_lowdin` = Loewdin, "
        "(S^1/2 P S^1/2)_mm. Units mu_B (spin only: n_alpha - n_beta electrons). Both sum over the "
        "atoms of a frame to `REF_total_magmom` = 2S. Values can be negative (spin polarisation, "
        "e.g. on the H atoms of CH3).",
        "",
        "## Keys",
        "",
        "- arrays: `REF_magmoms`, `REF_magmoms_lowdin` (mu_B)",
        "- info: `REF_total_magmom` (2S, mu_B), `multiplicity`, `molecule`, `level_of_theory`, "
        "`dft_energy` (UKS total energy, eV, for reference only: not `REF_energy`, because it is a "
        "different level of theory from the xTB-trained MACE model; no forces stored), `s2` "
        "(<S^2> of the Kohn-Sham determinant), `rattle_sigma` (A).",
        "",
        "## How it was made",
        "",
        "```bash",
        command,
        "```",
        "",
        "Reference geometries from `ase.build.molecule` (G2) where available; HO2, HOCO, CH2CHO "
        "(vinoxy), CH3OO (methylperoxy) and C3H5 (allyl) from Z-matrices in the script. Each frame displaces every "
        f"coordinate by a Gaussian with sigma drawn uniformly in {SIGMA_RANGE[0]}..{SIGMA_RANGE[1]} A "
        f"(redrawn if any distance < {MIN_DIST} A). Formyloxyl (HCOO) is left out: UKS lands on different "
        "near-degenerate doublet states from frame to frame. Split per molecule with a fixed seed, so every "
        "molecule is in every split. Seeded: the same command writes the same files. Takes 10-20 "
        "minutes on one CPU core (10 min of CPU time).",
        "",
        "## Counts",
        "",
        "| molecule | 2S | atoms | train | valid | test |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        c = [sum(a.info["molecule"] == name for a in splits[k]) for k in ("train", "valid", "test")]
        n_at = len(reference_geometry(name))
        lines.append(f"| {name} | {MOLECULES[name][0]} | {n_at} | {c[0]} | {c[1]} | {c[2]} |")
    tot = [len(splits[k]) for k in ("train", "valid", "test")]
    lines += [f"| **total** | | | {tot[0]} | {tot[1]} | {tot[2]} |", ""]
    lines.append("Skipped (SCF not converged): " + (", ".join(skipped) if skipped else "none") + ".")
    lines += [
        "",
        "## |magmom| per element (all frames, Mulliken; Loewdin in brackets)",
        "",
        "| element | atoms | mean abs | median abs | max abs | mean signed |",
        "|---|---|---|---|---|---|",
    ]
    mull, lowd = per_element(frames), per_element(frames, "REF_magmoms_lowdin")
    for s in mull:
        m, lo = mull[s], lowd[s]
        lines.append(
            f"| {s} | {len(m)} | {np.abs(m).mean():.4f} ({np.abs(lo).mean():.4f}) | "
            f"{np.median(np.abs(m)):.4f} ({np.median(np.abs(lo)):.4f}) | "
            f"{np.abs(m).max():.4f} ({np.abs(lo).max():.4f}) | {m.mean():+.4f} ({lo.mean():+.4f}) |"
        )
    lines += ["", "## Baseline", ""]
    for key in ("REF_magmoms", "REF_magmoms_lowdin"):
        means, mae, mae0 = baseline_mae(splits["train"], splits["test"], key)
        ms = ", ".join(f"{s} {v:+.4f}" for s, v in means.items())
        lines.append(
            f"- `{key}`: predicting the per-element mean of the train set ({ms}) gives a "
            f"per-atom test MAE of **{mae:.4f} mu_B**; predicting 0 gives {mae0:.4f} mu_B."
        )
    lines += [
        "",
        "## Licence",
        "",
        "Generated by this project's `scripts/make_magmom_data.py` (PySCF, ASE G2 geometries); "
        "distributed with sparseft under its MIT licence.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--frames-open", type=int, default=18, help="frames per open-shell molecule")
    p.add_argument("--frames-closed", type=int, default=12, help="frames per closed-shell molecule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    args = p.parse_args(argv)

    import pyscf

    targets = [args.out / f for f in ("train.xyz", "valid.xyz", "test.xyz", "README.md")]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.overwrite:
        print("refusing to overwrite (use --overwrite): " + ", ".join(existing), file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)

    level = f"UKS-B3LYP/{BASIS}, Mulliken spin populations, PySCF {pyscf.__version__}"
    t0 = time.time()
    frames_by_molecule: dict[str, list[Atoms]] = {}
    skipped: list[str] = []
    for mol_index, name in enumerate(MOLECULES):
        two_s = MOLECULES[name][0]
        ref = reference_geometry(name)
        n = args.frames_open if two_s else args.frames_closed
        frames_by_molecule[name] = []
        t_mol = time.time()
        for k in range(n):
            rng = np.random.default_rng([args.seed, mol_index, k])
            atoms, sigma = rattled(ref, rng)
            labelled = label(atoms, name, two_s, sigma, level)
            if labelled is None:
                skipped.append(f"{name} frame {k}")
                print(f"  SKIPPED {name} frame {k}: SCF not converged", flush=True)
                continue
            frames_by_molecule[name].append(labelled)
        mags = np.concatenate([a.arrays["REF_magmoms"] for a in frames_by_molecule[name]])
        print(
            f"{name:12s} 2S={two_s} {len(frames_by_molecule[name]):3d} frames  "
            f"max|m|={np.abs(mags).max():.3f}  {time.time() - t_mol:6.1f} s",
            flush=True,
        )

    splits = split(frames_by_molecule, np.random.default_rng(args.seed))
    for key, frames in splits.items():
        write_atomic(args.out / f"{key}.xyz", lambda tmp, fr=frames: write(tmp, fr, format="extxyz"))
    command = (
        "OMP_NUM_THREADS=1 python scripts/make_magmom_data.py"
        + (f" --frames-open {args.frames_open}" if args.frames_open != 18 else "")
        + (f" --frames-closed {args.frames_closed}" if args.frames_closed != 12 else "")
        + (f" --seed {args.seed}" if args.seed else "")
    )
    text = readme(splits, skipped, level, command)
    write_atomic(args.out / "README.md", lambda tmp: Path(tmp).write_text(text))

    back = sum(len(read(args.out / f"{k}.xyz", index=":")) for k in splits)
    _, mae, mae0 = baseline_mae(splits["train"], splits["test"])
    print(
        f"wrote {back} frames to {args.out} ({', '.join(f'{k} {len(v)}' for k, v in splits.items())}); "
        f"skipped {len(skipped)}; per-element-mean baseline test MAE {mae:.4f} mu_B "
        f"(zero: {mae0:.4f}); {(time.time() - t0) / 60:.1f} min",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
