#!/usr/bin/env python
"""SevenNet-0: sparseft's training step and inference against sevenn's own, side by side.

One process, one torch thread, float32 (SevenNet-0's dtype), one ~64-atom periodic structure
(diamond Si, 2x2x2 cubic cells, rattled), timed interleaved: every repetition runs each variant
once, so machine noise hits all alike. Reported: the median CPU time (``time.process_time``)
and wall time per call over the repetitions after the warm-up, and sparseft/sevenn ratios
(median of the per-repetition ratios).

1. **Training step** on a batch of the structure (labels: SevenNet-0's own prediction,
   perturbed), forward with forces (autograd graph kept), loss, backward, optimiser step:
   - ``sevenn``: sevenn's own trainer, ``sevenn.train.trainer.Trainer(...).run_one_epoch([batch],
     is_train=True)`` on an ``AtomGraphData`` batch (``sevenn.train.dataload.atoms_to_graph`` +
     torch_geometric ``Batch``) of a model built from the checkpoint, with the loss terms of
     SevenNet-0's config (``get_loss_functions_from_config``: Huber on energy per atom, forces
     and stress; its ``ForceStressOutputFromEdge`` yields forces and stress from one gradient)
     and Adam at the config's rate. Every parameter sevenn trains is trainable.
   - ``sparseft full FT``: ``sparseft.wrap(model, [FreezeConfig()])`` (every block), the step of
     ``sparseft.train.trainer.Trainer._step``: energy + force loss (``loss_sums``), backward,
     gradient clipping, Adam (AMSGrad, sparseft's default), ``after_step``.
   - ``sparseft sparse``: the same with ``SparseConfig(l1=0.1)`` (with its proximal L1 step).
   - ``sparseft full FT + stress``: full FT with the stress term too (sevenn's loss has one).
   Batches are collated before the timing (one fresh batch per call, for both sides).
2. **Inference** (energy, forces and stress, graph building included) of one merged model (the
   sparse adapter after its timed steps, ``merge()``, written with the backend's
   ``save_merged``): ``SevenNetCalculator(model=<merged.pth>)`` against
   ``sparseft.Calculator(<merged model>)``, plus ``sparseft.predict.predict`` for information;
   the two calculators' energies and forces are compared too.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/sevennet_speed.py          # ~2-3 min on 2 cores
    .venv/bin/python benchmarks/sevennet_speed.py --repeats 5 --output /tmp/x.md

The markdown record goes to ``--output`` (default ``benchmarks/results/sevennet_speed.md``).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spinning OpenMP threads

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, installed_versions  # noqa: E402  (benchmarks/machine.py)

import sparseft  # noqa: E402  (imports mace before e3nn)
from sparseft._compat import torch  # noqa: E402
from sparseft.backends.sevennet._import import sevenn as import_sevenn  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*tensor product accelerator.*")
warnings.filterwarnings("ignore", category=UserWarning, module="e3nn")

import_sevenn()  # sevenn's e3nn check passed here, once

from ase.build import bulk  # noqa: E402
from ase.calculators.calculator import all_changes  # noqa: E402
from ase.calculators.singlepoint import SinglePointCalculator  # noqa: E402
from sevenn import util as sevenn_util  # noqa: E402
from sevenn.atom_graph_data import AtomGraphData  # noqa: E402
from sevenn.calculator import SevenNetCalculator  # noqa: E402
from sevenn.train.dataload import atoms_to_graph  # noqa: E402
from sevenn.train.loss import get_loss_functions_from_config  # noqa: E402
from sevenn.train.trainer import Trainer as SevenTrainer  # noqa: E402
from torch_geometric.data import Batch  # noqa: E402

from sparseft.core.graph import collate  # noqa: E402
from sparseft.labels import Keys  # noqa: E402
from sparseft.predict import graphs, predict  # noqa: E402
from sparseft.recipe import TrainSection  # noqa: E402
from sparseft.train.losses import loss_sums, normalised, total_loss  # noqa: E402
from sparseft.train.trainer import make_optimizer  # noqa: E402

OUTPUT = Path(__file__).resolve().parent / "results" / "sevennet_speed.md"


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return cpu_model()


def structure(seed: int = 1):
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat(2)  # 64 atoms
    atoms.rattle(0.05, seed=seed)
    return atoms


def labelled(atoms, model, seed: int = 2):
    """``atoms`` with labels (SevenNet-0's prediction, perturbed) for both trainers: a calculator
    (sevenn's ``y_from_calc``) and sparseft's REF_* keys."""
    p = predict(model, [atoms])[0]
    rng = np.random.default_rng(seed)
    energy = p.energy + 0.01 * len(atoms)  # 10 meV/atom off
    forces = p.forces + rng.normal(0.0, 0.05, p.forces.shape)
    stress = p.stress + rng.normal(0.0, 1e-4, (3, 3))
    stress = 0.5 * (stress + stress.T)
    voigt = np.array([stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]])
    out = atoms.copy()
    out.calc = SinglePointCalculator(out, energy=energy, free_energy=energy, forces=forces, stress=voigt)
    out.info["REF_energy"] = energy
    out.arrays["REF_forces"] = forces
    out.info["REF_stress"] = stress
    return out


class Timer:
    """Per-variant CPU and wall seconds of each timed call."""

    def __init__(self):
        self.cpu: dict[str, list[float]] = {}
        self.wall: dict[str, list[float]] = {}

    def run(self, name: str, fn, record: bool = True):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        c1, w1 = time.process_time(), time.perf_counter()
        if record:
            self.cpu.setdefault(name, []).append(c1 - c0)
            self.wall.setdefault(name, []).append(w1 - w0)

    def median(self, name: str) -> tuple[float, float]:
        return statistics.median(self.cpu[name]), statistics.median(self.wall[name])

    def ratio(self, name: str, ref: str, kind: str = "cpu") -> float:
        series = self.cpu if kind == "cpu" else self.wall
        return statistics.median(a / b for a, b in zip(series[name], series[ref]))


def interleaved(timer: Timer, variants: dict, warmup: int, repeats: int) -> None:
    names = list(variants)
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:  # rotated order
            timer.run(name, variants[name], record=rep >= warmup)


# --- sevenn's own training step ---------------------------------------------------------------


def sevenn_trainer(checkpoint: str):
    cp = sevenn_util.load_checkpoint(checkpoint)
    config = cp.config
    model = cp.build_model()  # float32, sevenn's modules and force/stress output as it trains them
    trainer = SevenTrainer(
        model,
        loss_functions=get_loss_functions_from_config(config),
        optimizer_cls=torch.optim.Adam,  # config 'optimizer': adam
        optimizer_args=dict(config.get("optim_param", {})),
        device="cpu",
    )
    return trainer, config


def sevenn_batch(atoms, cutoff: float):
    """A fresh torch_geometric batch of one structure, as sevenn's DataLoader makes it."""
    graph = AtomGraphData.from_numpy_dict(atoms_to_graph(atoms, cutoff, y_from_calc=True))
    return Batch.from_data_list([graph])


# --- sparseft's training step -----------------------------------------------------------------


class SparseftStep:
    """``sparseft.train.trainer.Trainer._step`` on one batch (no schedule, no EMA)."""

    def __init__(self, adapted, lr: float, compute_stress: bool = False):
        self.model = adapted
        self.config = TrainSection(lr=lr)
        self.params = adapted.trainable_parameters()
        self.optimizer = make_optimizer(self.params, self.config)
        self.compute_stress = compute_stress
        self.weights = {
            "energy": self.config.energy_weight,
            "forces": self.config.forces_weight,
            "stress": self.config.stress_weight if compute_stress else 0.0,
        }
        self.model.train()

    def __call__(self, batch) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(batch, training=True, compute_force=True, compute_stress=self.compute_stress)
        loss = total_loss(normalised(loss_sums(batch, out)), self.weights)
        loss.backward()
        if self.config.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad)
        self.optimizer.step()
        self.model.after_step(self.config.lr, 1.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per variant (median; >= 5)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    load_before = os.getloadavg()

    base = sparseft.load_model("sevennet:7net-0")
    cutoff = float(base.r_max)
    atoms = labelled(structure(), base)
    n_atoms = len(atoms)
    keys = Keys()

    # --- 1. training steps ---
    trainer, config = sevenn_trainer("7net-0")
    n_sevenn = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    full = sparseft.wrap(base, [sparseft.FreezeConfig()])
    sparse = sparseft.wrap(base, [sparseft.SparseConfig(l1=0.1)])
    full_stress = sparseft.wrap(base, [sparseft.FreezeConfig()])
    steps = {
        "sparseft full FT": SparseftStep(full, lr=1e-3),
        "sparseft sparse": SparseftStep(sparse, lr=1e-2),
        "sparseft full FT + stress": SparseftStep(full_stress, lr=1e-3, compute_stress=True),
    }
    n_calls = args.warmup + args.repeats
    seven_batches = [sevenn_batch(atoms, cutoff) for _ in range(n_calls)]
    n_edges = int(seven_batches[0].edge_index.shape[1])
    item = graphs([atoms], base, labels=keys)
    sp_batches = {name: [collate(item) for _ in range(n_calls)] for name in steps}
    counters = {name: iter(b) for name, b in sp_batches.items()}
    seven_iter = iter(seven_batches)

    def sevenn_step():
        trainer.run_one_epoch([next(seven_iter)], is_train=True)

    def sparseft_step(name):
        return lambda: steps[name](next(counters[name]))

    train = Timer()
    interleaved(
        train,
        {"sevenn": sevenn_step, **{name: sparseft_step(name) for name in steps}},
        args.warmup,
        args.repeats,
    )
    trainable = {"sevenn": n_sevenn, **{n: sum(p.numel() for p in s.params) for n, s in steps.items()}}

    # --- 2. inference of the merged (trained sparse) model ---
    sparse.eval()
    merged = sparse.merge().eval()
    from sparseft.backends.sevennet import BACKEND

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "merged.pth"
        BACKEND.save_merged(merged, path)
        seven_calc = SevenNetCalculator(model=str(path), device="cpu")
    sp_calc = sparseft.Calculator(merged)
    probe = structure(seed=5)

    def calc_call(calc):
        def call():
            calc.calculate(probe, ["energy", "forces", "stress"], all_changes)

        return call

    infer = Timer()
    inference = {
        "sevenn SevenNetCalculator": calc_call(seven_calc),
        "sparseft Calculator": calc_call(sp_calc),
        "sparseft predict": lambda: predict(merged, [probe]),
    }
    interleaved(infer, inference, args.warmup, args.repeats)
    calc_call(seven_calc)()
    calc_call(sp_calc)()
    d_energy = abs(seven_calc.results["energy"] - sp_calc.results["energy"])
    d_forces = float(np.abs(seven_calc.results["forces"] - sp_calc.results["forces"]).max())
    d_stress = float(np.abs(seven_calc.results["stress"] - sp_calc.results["stress"]).max())
    changed = sum(int((p != 0).sum()) for p in sparse.trainable_parameters())

    load_after = os.getloadavg()
    versions = installed_versions(["torch", "e3nn", "sevenn", "mace-torch", "torch-geometric", "ase"])
    machine = lscpu_model()
    total = time.perf_counter() - t_start

    lines = [
        "# SevenNet-0: sparseft vs sevenn, training step and inference (CPU)",
        "",
        f"Run {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `benchmarks/sevennet_speed.py` "
        f"({total:.0f} s). Machine: {machine}, {os.cpu_count()} cores, torch threads: {torch.get_num_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. Load average (1/5/15 min) before: "
        f"{'/'.join(f'{x:.2f}' for x in load_before)}, after: {'/'.join(f'{x:.2f}' for x in load_after)} "
        "(a load above the core count means other processes shared the CPU: wall times suffer, CPU times less).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", python {platform.python_version()}.",
        "",
        f"Structure: diamond Si 2x2x2 cubic cells, rattled (0.05 Å), {n_atoms} atoms, {n_edges} edges "
        f"(cutoff {cutoff:g} Å); float32; median over {args.repeats} calls after {args.warmup} warm-up calls, "
        "interleaved; ratio = median of per-repetition ratios to sevenn.",
        "",
        "## Training step (forward with forces, loss, backward, optimiser step; one structure per batch)",
        "",
        "| variant | trainable params | CPU s / step | wall s / step | CPU ratio to sevenn | wall ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in ["sevenn", *steps]:
        cpu, wall = train.median(name)
        lines.append(
            f"| {name} | {trainable[name]:,} | {cpu:.3f} | {wall:.3f} | "
            f"{train.ratio(name, 'sevenn'):.2f} | {train.ratio(name, 'sevenn', 'wall'):.2f} |"
        )
    lines += [
        "",
        "sevenn: its `Trainer.run_one_epoch` with SevenNet-0's loss config (Huber δ=0.01 on energy/atom, forces, "
        "stress x0.01; stress comes with the forces' gradient in its edge-based output) and Adam (lr "
        f"{config.get('optim_param', {}).get('lr')}). sparseft: `Trainer._step`'s work: energy + force MSE (weights 100/10), "
        "backward, gradient clipping (10), Adam with AMSGrad, `after_step` (the sparse adapter's proximal L1 step); "
        "`+ stress` adds the stress term (weight 1) and its displacement gradient, as sevenn's loss has.",
        "",
        "## Inference of the merged model (energy, forces, stress; graph building included)",
        "",
        "| variant | CPU s / call | wall s / call | CPU ratio to SevenNetCalculator | wall ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    ref = "sevenn SevenNetCalculator"
    for name in inference:
        cpu, wall = infer.median(name)
        lines.append(
            f"| {name} | {cpu:.3f} | {wall:.3f} | {infer.ratio(name, ref):.2f} | {infer.ratio(name, ref, 'wall'):.2f} |"
        )
    lines += [
        "",
        f"Merged model: the sparse adapter after its {n_calls} steps ({changed:,} weights changed), `merge()`d and "
        "written by the SevenNet backend's `save_merged`; `SevenNetCalculator(model=merged.pth)` and "
        f"`sparseft.Calculator(merged)` agree to |dE| = {d_energy:.1e} eV, max |dF| = {d_forces:.1e} eV/Å, "
        f"max |dσ| = {d_stress:.1e} eV/Å³.",
        "",
    ]
    text = "\n".join(lines)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.output.with_suffix(".md.tmp")
    tmp_out.write_text(text)
    tmp_out.replace(args.output)
    print(text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
