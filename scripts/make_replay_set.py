#!/usr/bin/env python
"""Write the embedded foundation's shipped replay set: ``sparseft/embedded/domain/foundation_replay.xyz``.

Structures (no labels) of the mini-foundation's pretraining distribution, made by the
generator and filters of ``scripts/make_foundation.py`` with another seed (the foundation
used seed 0, the benchmark's forgetting set 20251122). A fine-tune of the embedded model
replays them with the base model's own predictions as labels::

    data:
      replay: {source: embedded:foundation_replay.xyz, labels: base, n: 30}

This is what a user of a real foundation model has no access to (its training set); shipping
a small, unlabelled sample of it is the substitute. Running the script again writes the same
structures (to ~1e-11 Å: the last digits of the EMT lattice constants follow the numpy build).

Usage::

    OMP_WAIT_POLICY=PASSIVE python scripts/make_replay_set.py
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = 424242
N = 60


def _make_foundation():
    spec = importlib.util.spec_from_file_location("_make_foundation", REPO / "scripts" / "make_foundation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def structures(n: int, seed: int) -> list:
    """``n`` structures in the foundation's family proportions, filtered as its training set was
    (``sample_structures`` labels them for its force filter), then stripped of their labels."""
    mf = _make_foundation()
    ref = mf.emt_reference()
    out = mf.sample_structures(mf.Generator(seed, ref), n, ref)
    for atoms in out:
        atoms.calc = None
        atoms.info = {"config_type": atoms.info["config_type"]}
        atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "sparseft" / "embedded" / "domain" / "foundation_replay.xyz"))
    args = p.parse_args(argv)
    import ase.io

    frames = structures(N, SEED)
    ase.io.write(args.out, frames, format="extxyz")
    print(f"{args.out}: {len(frames)} structures, {sum(len(a) for a in frames)} atoms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
