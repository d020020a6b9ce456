"""The Python API end to end, on a tiny Cu/Au MACE model and EMT-labelled cells.

Run: python examples/python_api.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import sparseft as sf
from sparseft._compat import torch
from sparseft.data import Frames, Keys
from sparseft.e0s import resolve_e0s, set_e0s
from sparseft.predict import atoms_to_batch
from sparseft.testing import check_equivariance, tiny_mace


def emt_cells(n: int, seed: int = 0):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    cells = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6 + rng.uniform(-0.1, 0.1), cubic=True)
        atoms[int(rng.integers(len(atoms)))].symbol = "Au"
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        cells.append(atoms)
    return cells


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="sparseft-example-"))

    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["skip", "contraction", "readout"]), l1=1e-3)])
    cells = emt_cells(8)
    # EMT energies have another zero than the model: least-squares correction of its E0s
    set_e0s(adapted.model, resolve_e0s("estimated", base, Frames("emt", cells, list(range(len(cells)))), Keys()))
    batch = atoms_to_batch(cells, adapted)
    energy = torch.tensor([a.info["REF_energy"] for a in cells], dtype=torch.float64)
    forces = torch.tensor(np.concatenate([a.arrays["REF_forces"] for a in cells]), dtype=torch.float64)

    optimizer = torch.optim.Adam(adapted.trainable_parameters(), lr=1e-2)
    for step in range(args.steps):
        if step == args.steps // 2:
            adapted.fix_support(density=0.1)  # phase 2: retrain the 10% largest changes
        optimizer.zero_grad()
        result = adapted(dict(batch), training=True, compute_force=True)
        n_atoms = batch["ptr"][1:] - batch["ptr"][:-1]
        loss = (((result["energy"] - energy) / n_atoms) ** 2).mean() + 10 * ((result["forces"] - forces) ** 2).mean()
        loss.backward()
        optimizer.step()
        adapted.proximal_step(1e-2)
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}  density {adapted.density()['overall']:.3f}")

    print(check_equivariance(adapted).format_table())
    sf.save_adapter(adapted, out / "adapter", overwrite=True)
    merged = adapted.merge()
    torch.save(merged, out / "merged.model")
    reloaded = sf.load_adapter(base, out / "adapter")
    print(
        f"adapter: {sum(f.stat().st_size for f in (out / 'adapter').iterdir())} bytes; "
        f"changed {reloaded.density()['changed']} weights; merged model in {out / 'merged.model'}"
    )


if __name__ == "__main__":
    main()
