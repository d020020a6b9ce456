"""Inference and training-step time of a merged model with and without cuEquivariance
(``sparseft.backends.mace.cueq.to_cueq``), interleaved, on one device.

    python benchmarks/cueq_speed.py [--like mp0-medium] [--device cuda] [--atoms 128] [--repeats 10]

Prints the median times and the speed-up; needs cuequivariance-torch (and, for the fast GPU
kernels, cuequivariance-ops-torch-cu12). On CPU cuEquivariance runs a slow fallback.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import sparseft as sf  # noqa: E402
from sparseft._compat import torch  # noqa: E402
from sparseft.backends.mace import cueq  # noqa: E402
from sparseft.predict import atoms_to_batch  # noqa: E402
from sparseft.testing.tiny import foundation_like  # noqa: E402


def _cell(n_atoms: int):
    """A rattled fcc Cu/Au cell with about ``n_atoms`` atoms."""
    from ase.build import bulk

    k = max(1, round((n_atoms / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((k, k, k))
    atoms.symbols[::3] = "Au"
    atoms.rattle(0.05, seed=0)
    return atoms


def _time(model, batch, device: str, train: bool) -> float:
    t0 = time.perf_counter()
    out = model(dict(batch), training=train, compute_force=True)
    if train:
        (out["energy"].sum() + out["forces"].pow(2).sum()).backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--like", default="mp0-medium")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--atoms", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    base = foundation_like(args.like, dtype=dtype).to(args.device)
    adapted = sf.wrap(base, [sf.SparseConfig()])
    with torch.no_grad():
        for part in adapted.prunable_parts():
            part.delta.normal_(0, 1e-3)
    merged = adapted.merge()
    fast = cueq.to_cueq(merged)
    batch = atoms_to_batch([_cell(args.atoms)], merged)
    for p_ in list(merged.parameters()) + list(fast.parameters()):
        p_.requires_grad_(True)
    a = merged(dict(batch), training=False, compute_force=True)
    b = fast(dict(batch), training=False, compute_force=True)
    diff = float((a["forces"] - b["forces"]).abs().max())
    print(
        f"{args.like}, {int(batch['positions'].shape[0])} atoms, {args.device}, {args.dtype}: "
        f"max |force difference| e3nn vs cueq {diff:.2e} eV/Å"
    )
    for train in (False, True):
        times = {"e3nn": [], "cueq": []}
        for _ in range(2):  # warm-up
            _time(merged, batch, args.device, train), _time(fast, batch, args.device, train)
        for _ in range(args.repeats):
            times["e3nn"].append(_time(merged, batch, args.device, train))
            times["cueq"].append(_time(fast, batch, args.device, train))
        e, c = statistics.median(times["e3nn"]), statistics.median(times["cueq"])
        print(
            f"{'training step' if train else 'inference'}: e3nn {1000 * e:.1f} ms, cueq {1000 * c:.1f} ms, "
            f"speed-up {e / c:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
