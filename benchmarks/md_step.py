#!/usr/bin/env python
"""Time per MD step of sparseft.Calculator against mace's MACECalculator, same merged model, one run.

Both ASE calculators load the *same* ``.model`` file and drive the same MD (ASE
``VelocityVerlet``, 1 fs, momenta drawn at 300 K) from copies of the same starting atoms,
for a ~100-atom and a ~500-atom periodic cell. By default the model is the embedded
mini-foundation (``sparseft.loading.load_base_model("embedded")``) wrapped with a sparse
adapter whose entries were set to random values (~3 % non-zero), merged with
``adapted.merge()`` and saved to a temporary ``.model`` file; ``--model PATH`` takes a
model file instead (used as it is, or converted and re-saved when ``--dtype`` differs from
its own dtype). Cells: a random Cu3Au-like fcc alloy (3x3x3 and 5x5x5 conventional cells,
108 and 500 atoms, rattled) when the model knows Cu and Au; a box of methanol molecules
when it knows H, C and O; otherwise a random triclinic cell of the model's elements.

Method: after warm-up steps (not timed) the two calculators run ``--steps`` MD steps each,
alternately (A B, B A, A B, ...) for ``--repeats`` repetitions, each continuing its own
trajectory. Per calculator: median and interquartile range (IQR) of ms/step; the ratio
sparseft / MACE is the median of the per-repetition ratios (with its IQR), from wall clock
and from process CPU time (with one torch thread, the CPU time is the step's own work,
undisturbed by other processes taking the core). Goal: ratio <= 1.02; the exit status is 1
when both ratios miss it or the step-0 check fails. Before the MD, energy,
forces and stress of the starting cell are compared (relative tolerance 1e-6 in float64,
1e-4 in float32), and after it the two trajectories.

``--stress`` also asks for the stress after every step (what NPT dynamics or
``MDLogger(stress=True)`` do); without it the MD asks for forces (and energy) only.
``--control`` times a second ``MACECalculator`` in place of ``sparseft.Calculator`` (the
"sparseft" columns then hold it): the spread of that ratio around 1 is the noise floor.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/md_step.py                    # float64, ~3 min on 2 cores
    OMP_WAIT_POLICY=PASSIVE python benchmarks/md_step.py --dtype float32 --append
    OMP_WAIT_POLICY=PASSIVE python benchmarks/md_step.py --quick --output /tmp/md_step.md
    OMP_WAIT_POLICY=PASSIVE python benchmarks/md_step.py \\
        --model ../shared/real/models/mace_tutorial_ECEMC_xtb_mace01_swa.model --append

The markdown record goes to ``--output`` (default ``benchmarks/results/md_step.md``),
written atomically; ``--append`` adds this run's section to it instead of replacing it.
"""

from __future__ import annotations

import os

# Before torch loads: with OpenMP's default active waiting, a small machine slows down
# several-fold as soon as another process is busy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from machine import cpu_model, installed_versions, usable_cores  # noqa: E402  (benchmarks/machine.py)

import sparseft  # noqa: E402  (imports mace before e3nn)
from sparseft._compat import torch  # noqa: E402
from sparseft.files import write_file_atomically  # noqa: E402
from sparseft.loading import load_base_model  # noqa: E402
from sparseft.predict import atoms_to_batch, model_dtype  # noqa: E402

warnings.filterwarnings("ignore", message="To copy construct from a tensor")  # mace's model constructor

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "md_step.md"
GOAL = 1.02  # sparseft.Calculator / MACECalculator, time per MD step
TOLERANCE = {"float64": 1e-6, "float32": 1e-4}  # step-0 agreement, relative
TEMPERATURE_K = 300.0


# --------------------------------------------------------------------------- model
def merged_model_file(args, workdir: Path) -> tuple[Path, str, torch.nn.Module]:
    """The model file both calculators load, its description, and the loaded model."""
    if args.model is None:
        base = load_base_model("embedded", dtype=args.dtype)
        adapted = sparseft.wrap(base, [sparseft.SparseConfig()])
        g = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            for p in adapted.trainable_parameters():
                values = 0.01 * torch.randn(p.shape, generator=g, dtype=torch.float64)
                values *= torch.rand(p.shape, generator=g, dtype=torch.float64) < 0.03
                p.copy_(values.to(p))
        merged = adapted.merge().eval()
        path = workdir / "merged.model"
        torch.save(merged, path)
        desc = (
            f"embedded mini-foundation ({type(merged).__name__}) + `SparseConfig()` adapter with random "
            f"entries (~3 % non-zero), `adapted.merge()`d and saved to a temporary `.model` file"
        )
        return path, desc, merged
    path = Path(args.model)
    model = sparseft.load_model(path)
    own = str(model_dtype(model)).replace("torch.", "")
    desc = f"`{args.model}` ({type(model).__name__})"
    if args.dtype != own:
        model = sparseft.load_model(path, dtype=args.dtype)
        path = workdir / "converted.model"
        torch.save(model, path)
        desc += f", converted from {own} by `sparseft.load_model(dtype=...)` and saved to a temporary `.model` file"
    return path, desc, model


def make_calculators(path: Path, args) -> dict:
    from mace.calculators import MACECalculator

    logging.getLogger().setLevel(logging.ERROR)  # MACECalculator logs its dtype choice at WARNING

    def mace():
        return MACECalculator(model_paths=str(path), device=args.device, default_dtype=args.dtype)

    first = (
        ("MACECalculator (control copy)", mace())
        if args.control
        else ("sparseft.Calculator", sparseft.Calculator(path, device=args.device))
    )
    return dict([first, ("MACECalculator", mace())])


# --------------------------------------------------------------------------- cells
def fcc_cuau(target: int, rng) -> tuple:
    from ase.build import bulk

    n = max(1, round((target / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat(n)
    atoms.symbols[rng.choice(len(atoms), size=len(atoms) // 4, replace=False)] = "Au"
    atoms.rattle(0.05, rng=rng)
    return atoms, f"fcc Cu3Au-like random alloy, {n}x{n}x{n} conventional cells, a = 3.75 Å, rattled 0.05 Å"


def grid_shape(n_sites: int) -> tuple[int, int, int]:
    """A near-cubic grid (longest side <= 2x the shortest) with close to ``n_sites`` sites."""
    best = None
    for a in range(1, 20):
        for b in range(a, 2 * a + 1):
            for c in range(b, 2 * a + 1):
                key = (abs(a * b * c - n_sites), c - a)
                if best is None or key < best[0]:
                    best = (key, (a, b, c))
    return best[1]


def methanol_box(target: int, rng, spacing: float = 4.3, min_distance: float = 1.8) -> tuple:
    """Methanol molecules, randomly oriented, on a periodic grid (no inter-molecular pair < 1.8 Å)."""
    from ase import Atoms
    from ase.build import molecule

    mol = molecule("CH3OH")
    mol.positions -= mol.get_center_of_mass()
    shape = grid_shape(round(target / len(mol)))
    cell = np.diag(np.array(shape, dtype=float) * spacing)
    box = Atoms(cell=cell, pbc=True)
    for site in np.ndindex(*shape):
        for _ in range(500):
            m = mol.copy()
            m.rotate(rng.uniform(0, 360), rng.normal(size=3))
            m.positions += (np.array(site) + 0.5) * spacing
            if len(box) == 0:
                break
            d = m.positions[:, None, :] - box.positions[None, :, :]
            frac = d @ np.linalg.inv(cell)
            d = (frac - np.round(frac)) @ cell
            if np.min(np.linalg.norm(d, axis=-1)) >= min_distance:
                break
        else:
            raise RuntimeError("could not place a methanol molecule")
        box += m
    volume = box.get_volume() * 1e-24
    density = box.get_masses().sum() / 6.02214076e23 / volume
    return box, (
        f"{len(box) // len(mol)} methanol molecules on a {shape[0]}x{shape[1]}x{shape[2]} periodic grid, "
        f"random orientations, {density:.2f} g/cm^3"
    )


def build_cell(elements: set[int], target: int, rng) -> tuple:
    if {29, 79} <= elements:
        return fcc_cuau(target, rng)
    if {1, 6, 8} <= elements:
        return methanol_box(target, rng)
    from sparseft.testing.structures import random_triclinic_cell

    numbers = rng.choice(sorted(elements), size=target)
    return random_triclinic_cell(numbers, rng), "random triclinic cell of the model's elements, 12 Å^3/atom"


# --------------------------------------------------------------------------- checks
def compare_step0(calcs: dict, atoms, stress: bool) -> dict:
    values = {}
    for name, calc in calcs.items():
        a = atoms.copy()
        a.calc = calc
        values[name] = (a.get_potential_energy(), a.get_forces(), a.get_stress(voigt=False) if stress else None)
    (e1, f1, s1), (e2, f2, s2) = values.values()
    out = {
        "energy": abs(e1 - e2) / max(abs(e2), 1e-12),
        "forces": float(np.abs(f1 - f2).max() / max(np.abs(f2).max(), 1e-12)),
    }
    if stress:
        out["stress"] = float(np.abs(s1 - s2).max() / max(np.abs(s2).max(), 1e-12))
    return out


# --------------------------------------------------------------------------- timing
@dataclass
class Run:
    name: str
    calc: object
    atoms: object = None
    dyn: object = None
    calls: int = 0  # calculate() calls: model evaluations
    calc_cpu: float = 0.0  # process CPU time inside calculate()
    model_cpu: float = 0.0  # ... of which inside the model's forward (energy and its gradients)
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)


def start_md(run: Run, atoms0, timestep_fs: float, stress: bool) -> None:
    """Attach ``run.calc`` to a copy of ``atoms0``, instrumented to count and time its calls."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    run.atoms = atoms0.copy()
    run.atoms.calc = run.calc
    calculate = run.calc.calculate

    def timed_calculate(*a, **k):
        c0 = time.process_time()
        try:
            return calculate(*a, **k)
        finally:
            run.calls += 1
            run.calc_cpu += time.process_time() - c0

    run.calc.calculate = timed_calculate
    model = run.calc.model if isinstance(run.calc, sparseft.Calculator) else run.calc.models[0]
    started = []
    model.register_forward_pre_hook(lambda *_: started.append(time.process_time()))
    model.register_forward_hook(
        lambda *_: setattr(run, "model_cpu", run.model_cpu + time.process_time() - started.pop())
    )
    run.dyn = VelocityVerlet(run.atoms, timestep=timestep_fs * units.fs)
    if stress:
        run.dyn.attach(run.atoms.get_stress, interval=1)


def time_md(runs: list[Run], steps: int, repeats: int, warmup: int) -> None:
    for run in runs:
        run.dyn.run(warmup)
    for run in runs:
        run.calls, run.calc_cpu, run.model_cpu = 0, 0.0, 0.0
    for r in range(repeats):
        for run in runs if r % 2 == 0 else runs[::-1]:  # A B, B A, ...
            gc.collect()
            t0, c0 = time.perf_counter(), time.process_time()
            run.dyn.run(steps)
            run.times.append((time.perf_counter() - t0) / steps)
            run.cpu_times.append((time.process_time() - c0) / steps)


def quartiles(xs) -> tuple[float, float, float]:
    xs = sorted(xs)
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


# --------------------------------------------------------------------------- report
def machine_info(args) -> list[tuple[str, str]]:
    cpu, usable = cpu_model(), usable_cores()
    versions = [
        f"{pkg} {v}"
        for pkg, v in installed_versions(("torch", "mace-torch", "e3nn", "ase", "numpy", "matscipy")).items()
    ]
    device = args.device
    if args.device == "cuda":
        device += f" ({torch.cuda.get_device_name()})"
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        (
            "torch threads",
            f"{torch.get_num_threads()} intra-op (torch.set_num_threads({args.threads})"
            + ("; one thread, so that timings are less disturbed by load on the other core" * (args.threads == 1))
            + f"), {torch.get_num_interop_threads()} inter-op",
        ),
        ("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "(unset)")),
        ("device, dtype", f"{device}, {args.dtype}"),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("python", platform.python_version()),
        ("packages", ", ".join(versions)),
        ("platform", platform.platform()),
    ]


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        default=None,
        help="a MACE .model file (default: the embedded mini-foundation with a random sparse adapter, merged)",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(TOLERANCE),
        default=None,
        help="float32 or float64 (default float64 for the embedded model, the file's own dtype for --model)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--atoms",
        type=int,
        nargs="+",
        default=[100, 500],
        help="target cell sizes (default 100 500; the cell builder picks the nearest size it can make)",
    )
    p.add_argument("--steps", type=int, default=None, help="MD steps per calculator per repetition (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 40; --quick 2)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed MD steps per calculator first (default 3; --quick 1)"
    )
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--stress", action="store_true", help="also ask for the stress after every MD step")
    p.add_argument(
        "--control",
        action="store_true",
        help="noise floor: time a second MACECalculator in place of sparseft.Calculator",
    )
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a smoke run (~15 s): 2 repetitions")
    p.add_argument(
        "--output", default=str(DEFAULT_OUTPUT), help="markdown record (default benchmarks/results/md_step.md)"
    )
    p.add_argument("--append", action="store_true", help="add this run's section to --output instead of replacing it")
    args = p.parse_args(argv)
    args.steps = args.steps or 2
    args.repeats = args.repeats or (2 if args.quick else 40)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if args.dtype is None:
        args.dtype = (
            "float64" if args.model is None else str(model_dtype(sparseft.load_model(args.model))).replace("torch.", "")
        )
    return args


def run_cell(target: int, path: Path, model, args) -> tuple[list[str], str, bool]:
    calcs = make_calculators(path, args)  # fresh calculators (no cached results) for each cell
    rng = np.random.default_rng(args.seed + target)
    atoms0, cell_desc = build_cell({int(z) for z in model.atomic_numbers}, target, rng)
    from ase.md.velocitydistribution import Stationary, thermalize_momenta

    thermalize_momenta(atoms0, temperature_K=TEMPERATURE_K, rng=np.random.default_rng(args.seed))
    Stationary(atoms0)
    n_edges = int(atoms_to_batch([atoms0], model)["edge_index"].shape[1])
    label = f"{len(atoms0)} atoms"
    print(f"[{label}: {cell_desc}; {n_edges} directed edges; timing ...]", flush=True)

    diffs = compare_step0(calcs, atoms0, stress=bool(atoms0.pbc.all()))
    tol = TOLERANCE[args.dtype]
    same = all(v <= tol for v in diffs.values())

    runs = [Run(name, calc) for name, calc in calcs.items()]
    for run in runs:
        start_md(run, atoms0, args.timestep, args.stress)
    t_start = time.perf_counter()
    time_md(runs, args.steps, args.repeats, args.warmup)
    wall = time.perf_counter() - t_start
    a, b = runs
    dpos = float(np.abs(a.atoms.positions - b.atoms.positions).max())
    de = abs(a.atoms.get_total_energy() - b.atoms.get_total_energy()) / len(atoms0)

    r25, r50, r75 = quartiles([x / y for x, y in zip(a.times, b.times)])
    c25, c50, c75 = quartiles([x / y for x, y in zip(a.cpu_times, b.cpu_times)])
    share = sum(a.cpu_times + b.cpu_times) / sum(a.times + b.times)
    verdict = f"{'met' if r50 <= GOAL else 'MISSED'} / {'met' if c50 <= GOAL else 'MISSED'}"
    n_steps = args.steps * args.repeats
    lines = [
        f"### {label}",
        "",
        f"- cell: {cell_desc}; {n_edges} directed edges within r_max = {float(model.r_max)} Å",
        "",
    ]
    lines += [
        "| calculator | median ms/step | IQR ms/step | CPU ms/step | model evaluations per step "
        "| CPU ms/step in the model | CPU ms/step in calculate(), outside the model |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        t25, t50, t75 = quartiles(run.times)
        lines.append(
            f"| `{run.name}` | {ms(t50)} | {ms(t25)}-{ms(t75)} | {ms(statistics.median(run.cpu_times))} "
            f"| {run.calls / n_steps:.2f} | {ms(run.model_cpu / n_steps)} "
            f"| {1000 * (run.calc_cpu - run.model_cpu) / n_steps:.2f} |"
        )
    lines += [
        "",
        f"**Ratio sparseft / MACE: {r50:.3f}** (IQR {r25:.3f}-{r75:.3f}) wall clock, **{c50:.3f}** "
        f"(IQR {c25:.3f}-{c75:.3f}) CPU time; goal <= {GOAL:.2f} (wall / CPU): **{verdict}**.",
        "",
    ]
    lines += [
        "- step 0, relative difference sparseft vs MACE: "
        + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
        + f" (tolerance {tol:.0e}: {'same' if same else 'DIFFERENT'})",
        f"- after {args.warmup + n_steps} MD steps each: max |Δ position| {dpos:.1e} Å, "
        f"|Δ total energy| {de:.1e} eV/atom",
        f"- wall time {wall:.0f} s; CPU time / wall time while timing: {share:.2f} "
        "(below ~0.9: other processes took this process's core part of the time)",
        "",
    ]
    print("\n".join(lines), flush=True)
    summary = (
        f"| {label} | {ms(quartiles(a.times)[1])} ({ms(statistics.median(a.cpu_times))}) "
        f"| {ms(quartiles(b.times)[1])} ({ms(statistics.median(b.cpu_times))}) "
        f"| **{r50:.3f}** ({r25:.3f}-{r75:.3f}) | **{c50:.3f}** ({c25:.3f}-{c75:.3f}) | {verdict} "
        f"| {'yes' if same else 'NO'} |"
    )
    return lines, summary, same and min(r50, c50) <= GOAL


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    ok = True
    with tempfile.TemporaryDirectory(prefix="sparseft-md-step-") as tmp:
        path, model_desc, model = merged_model_file(args, Path(tmp))
        command = " ".join(["python", "benchmarks/md_step.py"] + (sys.argv[1:] if argv is None else list(argv)))
        header = [
            f"## Run of {started.strftime('%Y-%m-%d %H:%M UTC')}: {args.dtype}, "
            f"{'forces + stress' if args.stress else 'forces'} per step"
            + (", CONTROL (MACECalculator vs MACECalculator: the noise floor)" if args.control else ""),
            "",
        ]
        header += [f"- {k}: {v}" for k, v in machine_info(args)]
        header += [
            f"- command: `OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')} {command}`",
            f"- model: {model_desc}; {sum(p.numel() for p in model.parameters()):,} parameters, "
            f"elements {[int(z) for z in model.atomic_numbers]}",
            f"- calculators: {'a second `MACECalculator` (control)' if args.control else '`sparseft.Calculator(path)`'} "
            f'and `MACECalculator(model_paths=path, default_dtype="{args.dtype}")`, both on {args.device}',
            f"- MD: ASE `VelocityVerlet`, {args.timestep:g} fs, momenta from a {TEMPERATURE_K:g} K Maxwell-Boltzmann "
            f"distribution; the MD asks for {'forces, energy and stress' if args.stress else 'forces (and energy)'}",
            f"- timing: {args.warmup} warm-up steps per calculator (untimed), then {args.repeats} repetitions of "
            f"{args.steps} steps per calculator, interleaved (A B, B A, ...); ms/step: median and IQR over "
            "repetitions; ratio: median (IQR) of per-repetition ratios, from wall clock and from process CPU time "
            "(with one thread the CPU time is the step's own work; read it when other processes load the machine)",
            "",
        ]
        print("\n".join(header), flush=True)
        body, summary = [], []
        for target in args.atoms:
            lines, row, good = run_cell(target, path, model, args)
            body += lines
            summary.append(row)
            ok &= good
    summary = (
        [
            "| cell | sparseft ms/step wall (CPU) | MACE ms/step wall (CPU) | ratio sparseft / MACE, wall (IQR) "
            f"| ratio, CPU time (IQR) | goal <= {GOAL:.2f} (wall / CPU) | same E/F/stress at step 0 |",
            "|---|---|---|---|---|---|---|",
        ]
        + summary
        + [""]
    )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    footer = [f"Total wall time: {time.perf_counter() - t0:.0f} s; load average at the end (1/5/15 min): {load}.", ""]
    print(footer[0])

    out = Path(args.output)
    section = "\n".join(header + summary + body + footer)
    title = (
        "# MD step time: sparseft.Calculator vs MACECalculator\n\n"
        "Generated by `benchmarks/md_step.py`; see `benchmarks/README.md`.\n\n"
    )
    text = out.read_text().rstrip("\n") + "\n\n" + section if args.append and out.exists() else title + section
    out.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
