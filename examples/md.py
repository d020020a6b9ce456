"""MD with a fine-tuned model: Langevin NVT, then NVE with the energy drift and steps per second.

Run after `make demo` (uses quickstart-output/merged.model and a Cu-Au cell), or give any
structure file and model (a merged model, `embedded` with --adapter DIR, or a model with
heads and --head NAME):

    python examples/md.py [--structure POSCAR|file.xyz] [--model PATH] [--adapter DIR] [--head NAME]
                          [--steps 200] [--out md.traj]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from ase import units
from ase.build import bulk
from ase.io.trajectory import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from sparseft.calculator import Calculator
from sparseft.geometry import check_structure


def cuau_cell(seed: int = 0):
    """A 2x2x2 fcc Cu cell (32 atoms) with a quarter of the sites Au, as in the quick-start data."""
    atoms = bulk("Cu", "fcc", a=3.95, cubic=True).repeat(2)
    rng = np.random.default_rng(seed)
    atoms.symbols[rng.choice(len(atoms), size=len(atoms) // 4, replace=False)] = "Au"
    return atoms


def _structure(parser, path: str | None):
    if path is None:
        return cuau_cell()
    import ase.io

    if not Path(path).is_file():
        parser.error(f"{path}: no such structure file")
    try:
        return ase.io.read(path)  # the last frame of a trajectory
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        parser.error(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})")


def _run(dynamics, steps: int) -> float:
    """Run ``steps`` MD steps; returns steps per second."""
    start = time.perf_counter()
    dynamics.run(steps)
    return steps / max(time.perf_counter() - start, 1e-9)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structure", default=None, help="any ASE-readable file (default: a 32-atom Cu-Au cell)")
    parser.add_argument("--model", default="quickstart-output/merged.model")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--head", default=None, help="energy head of a model with heads")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--temperature", type=float, default=300.0)
    parser.add_argument("--timestep", type=float, default=2.0, help="fs")
    parser.add_argument("--out", default="md.traj")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    if args.model != "embedded" and not Path(args.model).is_file():
        parser.error(f"{args.model}: no such model file (run `make demo` first, or pass --model)")

    atoms = _structure(parser, args.structure)
    calc = Calculator(args.model, adapter=args.adapter, head=args.head, dtype=args.dtype)
    try:
        check_structure(atoms, [int(z) for z in calc.model.atomic_numbers])
    except ValueError as exc:
        parser.error(f"{args.structure or 'the Cu-Au cell'}: {exc}")
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=np.random.default_rng(0))
    nvt = Langevin(
        atoms,
        args.timestep * units.fs,
        temperature_K=args.temperature,
        friction=0.02,
        fixcm=False,
        rng=np.random.default_rng(1),
    )
    with Trajectory(args.out, "w", atoms) as traj:
        nvt.attach(traj.write, interval=10)
        nvt_rate = _run(nvt, args.steps)
    temperature = atoms.get_temperature()

    nve = VelocityVerlet(atoms, args.timestep * units.fs)
    energies = []
    nve.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    nve_rate = _run(nve, args.steps)
    time_ps = np.arange(len(energies)) * args.timestep / 1000
    drift = float(np.polyfit(time_ps, np.array(energies) / len(atoms), 1)[0]) if len(energies) > 1 else 0.0
    print(
        f"NVT: {args.steps} steps at {args.temperature} K -> T = {temperature:.0f} K; {nvt_rate:.1f} steps/s; "
        f"trajectory in {args.out}"
    )
    print(
        f"NVE: {args.steps} steps of {args.timestep} fs; {nve_rate:.1f} steps/s ({len(atoms)} atoms); "
        f"energy drift {drift * 1000:.3f} meV/atom/ps"
    )
    return {"temperature": temperature, "drift_eV_per_atom_per_ps": drift, "steps_per_s": nve_rate}


if __name__ == "__main__":
    main()
