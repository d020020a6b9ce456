"""Batching cost: sparseft's one collate (``sparseft.core.graph.collate``, every family) against
mace-torch's own ``Batch.from_data_list`` on the same mace ``AtomicData`` graphs, next to one
training step of the same batch, so the change of loader reads as a fraction of a step.

Usage: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/collate_speed.py [--repeats 50]``; writes
``benchmarks/results/collate_speed.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from sparseft.core.graph import collate  # noqa: E402
from sparseft.testing.tiny import tiny_mace  # noqa: E402

OUTPUT = Path(__file__).parent / "results" / "collate_speed.md"


def frames(n: int, atoms: int):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    out = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, atoms // 32 or 1))
        a.rattle(0.05, seed=i)
        a.calc = EMT()
        a.info["REF_energy"], a.arrays["REF_forces"] = a.get_potential_energy(), a.get_forces()
        a.calc = None
        out.append(a)
    return out


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median CPU ms, median wall ms) of ``fn()``."""
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(1000 * (time.process_time() - c))
        wall.append(1000 * (time.perf_counter() - w))
    return statistics.median(cpu), statistics.median(wall)


def both_graphs(model, structures) -> tuple[list, list, str]:
    """sparseft's graph items and mace's own ``AtomicData`` of ``structures`` (same keys, cutoff,
    dtype), and how many of the collated batches' shared keys are equal."""
    from mace import data
    from mace.tools import AtomicNumberTable
    from mace.tools.torch_geometric import Batch

    from sparseft._compat import default_dtype
    from sparseft.backends.mace.graphs import graphs
    from sparseft.labels import Keys

    items = graphs(structures, model, labels=Keys())
    spec = data.KeySpecification(
        info_keys={"energy": "REF_energy", "stress": "REF_stress", "virials": "REF_virials"},
        arrays_keys={"forces": "REF_forces"},
    )
    z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
    cutoff = float(model.r_max)
    with default_dtype(next(model.parameters()).dtype):
        mace_items = [
            data.AtomicData.from_config(
                data.config_from_atoms(a, spec), z_table=z_table, cutoff=cutoff, heads=["Default"]
            )
            for a in structures
        ]
    ours, theirs = collate(items), Batch.from_data_list(mace_items)
    keys = theirs.keys() if callable(theirs.keys) else theirs.keys
    shared = [k for k in ours if torch.is_tensor(ours[k]) and k in keys and torch.is_tensor(theirs[k])]
    differ = [k for k in shared if not torch.equal(ours[k], theirs[k])]
    same = f"{len(shared) - len(differ)} of {len(shared)} shared keys equal" + (f" (not: {differ})" if differ else "")
    return items, mace_items, same


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import sparseft as sf

    model = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    structures = frames(args.batch_size, 64)
    items, mace_items, same = both_graphs(model, structures)
    from mace.tools.torch_geometric import Batch

    adapted = sf.wrap(model, [sf.SparseConfig()])
    optimizer = torch.optim.Adam(adapted.trainable_parameters(), lr=1e-4)

    def step():
        batch = collate(items)
        out = adapted(batch, training=True, compute_force=True)
        loss = ((out["energy"] - batch["energy"]) ** 2).mean() + ((out["forces"] - batch["forces"]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for fn in (lambda: collate(items), lambda: Batch.from_data_list(mace_items), step):
        fn()  # warm-up
    rows = {
        "sparseft collate": timed(lambda: collate(items), args.repeats),
        "mace Batch.from_data_list": timed(lambda: Batch.from_data_list(mace_items), args.repeats),
        "one training step (sparse adapter, tiny MACE, collate included)": timed(step, max(5, args.repeats // 10)),
    }
    load = os.getloadavg()
    atoms = sum(len(a) for a in structures)
    lines = [
        "# Batching: sparseft's collate against mace's Batch.from_data_list",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/collate_speed.py`; "
        f"1 torch thread, OMP_WAIT_POLICY=PASSIVE, load average {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}. "
        f"Batch: {args.batch_size} rattled Cu cells, {atoms} atoms, float64 mace AtomicData graphs (cutoff 4.5 Å). "
        f"Same tensors: {same}. Medians of {args.repeats} calls.",
        "",
        "| what | CPU ms | wall ms | CPU ratio to mace's batching |",
        "|---|---:|---:|---:|",
    ]
    base = rows["mace Batch.from_data_list"][0]
    for name, (cpu, wall) in rows.items():
        lines.append(f"| {name} | {cpu:.2f} | {wall:.2f} | {cpu / base:.2f} |")
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
