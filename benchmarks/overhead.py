#!/usr/bin/env python
"""Time overhead of sparseft adapters against plain MACE, side by side in one run.

Measures, for one or more base models:

1. **Training step** (forward, forces by autograd with ``create_graph`` (``training=True``),
   energy + force loss, backward, Adam step, and for sparse adapters the proximal step) of
   - ``base (full FT)``: the plain MACE model, every parameter trainable (the reference),
   - ``sparse: all``: ``SparseConfig()`` on every block,
   - ``sparse: skip+contraction``: ``SparseConfig(select=Selector(kinds=["skip", "contraction"]))``,
   - ``lora r=4``: ``LoRAConfig(rank=4)`` with the default selector,
   - ``freeze: last layer``: ``FreezeConfig(select=Selector(layers=[last]))``,
   - ``freeze: all``: ``FreezeConfig()`` (full fine-tuning through sparseft),
   each reported as a ratio to the base step.
2. **Inference** (energy + forces, ``training=False``) of ``adapted.merge()`` (after the
   adapter parameters were set to random values) against the base model, and of the
   unmerged adapted models for information.

Variants are timed *interleaved*: every repetition runs each variant once (in a rotated
order), so machine noise hits all variants alike. Ratios are medians of the per-repetition
ratios to the base measured in the same repetition; the spread is their interquartile range.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/overhead.py              # tiny models, ~4 min on 2 cores
    python benchmarks/overhead.py --quick                              # ~1 min smoke run
    python benchmarks/overhead.py --model ../shared/real/models/X.model \\
        --structures ../shared/real/data/mace_tutorial_solvent/solvent_xtb_test.xyz --repeats 40 --append

``--model`` takes a ``.model`` file or one of the built-in tiny models (``tiny-scalar``,
``tiny-vector``) and may be repeated. The markdown record goes to ``--output`` (default
``benchmarks/results/overhead.md``), written atomically; ``--append`` adds this run's
section to an existing file instead of replacing it.
"""

from __future__ import annotations

import os

# Must be set before torch (and its OpenMP runtime) loads: with the default "active"
# waiting, OpenMP threads spin and a 2-core machine slows down several-fold as soon as
# another process is busy.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime as _dt  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from machine import cpu_model, installed_versions, usable_cores  # noqa: E402  (benchmarks/machine.py)

import sparseft  # noqa: E402  (imports mace before e3nn)
from sparseft import FreezeConfig, LoRAConfig, Selector, SparseConfig  # noqa: E402
from sparseft._compat import torch  # noqa: E402
from sparseft.predict import atoms_to_batch  # noqa: E402
from sparseft.testing.structures import random_triclinic_cell  # noqa: E402
from sparseft.testing.tiny import LIKE, foundation_like, tiny_mace  # noqa: E402

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "overhead.md"
GOAL_INFERENCE = 1.02  # merged inference / base inference
GOAL_TRAINING = 1.30  # adapter training step / base full fine-tuning step
LR = 1e-4

# MACE-MP-0-small-like in kind (2 interactions, max_ell 3, correlation 3, 5 elements),
# smaller in width and radial MLP so a run stays within minutes on 2 cores.
TINY_MODELS = {
    "tiny-scalar": dict(hidden_irreps="64x0e"),
    "tiny-vector": dict(hidden_irreps="32x0e+32x1o"),
}
TINY_COMMON = dict(atomic_numbers=(1, 6, 8, 13, 29), max_ell=3, correlation=3, num_interactions=2, r_max=5.0)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------- setup
@dataclass
class ModelCase:
    name: str
    model: torch.nn.Module
    description: str
    atoms: list = field(default_factory=list)
    structures_note: str = ""


def build_model(spec: str, dtype_name: str | None, device: str = "cpu") -> tuple[torch.nn.Module, str]:
    model, desc = _build_model(spec, dtype_name)
    return model.to(device), desc


def _build_model(spec: str, dtype_name: str | None) -> tuple[torch.nn.Module, str]:
    if spec in LIKE:  # a randomly initialised model with a foundation model's architecture
        model = foundation_like(spec, dtype=DTYPES[dtype_name or "float32"])
        desc = f"`{spec}`: randomly initialised, {spec}'s architecture, {dtype_name or 'float32'}"
    elif spec in TINY_MODELS:
        dtype = DTYPES[dtype_name or "float64"]
        kwargs = {**TINY_COMMON, **TINY_MODELS[spec]}
        model = tiny_mace(dtype=dtype, **kwargs)
        desc = (
            f"`{spec}`: tiny_mace(hidden_irreps={kwargs['hidden_irreps']!r}, elements={list(kwargs['atomic_numbers'])}, "
            f"max_ell={kwargs['max_ell']}, correlation={kwargs['correlation']}, "
            f"num_interactions={kwargs['num_interactions']}, r_max={kwargs['r_max']}), {str(dtype).replace('torch.', '')}"
        )
    else:
        model = sparseft.load_model(spec, dtype=dtype_name)
        dtype = next(model.parameters()).dtype
        desc = f"`{spec}` ({type(model).__name__}, {str(dtype).replace('torch.', '')}"
        desc += ", native)" if dtype_name is None else ")"
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    n = sum(p.numel() for p in model.parameters())
    return model, f"{desc}; {n:,} parameters"


def build_structures(model, n_atoms: int, n_structures: int, path: str | None, seed: int):
    if path:
        import ase.io

        frames, total = [], 0
        for atoms in ase.io.read(path, index=":"):
            frames.append(atoms)
            total += len(atoms)
            if total >= n_atoms:
                break
        pbc = "periodic" if all(a.pbc.all() for a in frames) else "non-periodic"
        return frames, f"first {len(frames)} frame(s) of `{path}` ({pbc})"
    rng = np.random.default_rng(seed)
    elements = sorted(int(z) for z in model.atomic_numbers)
    sizes = [n_atoms // n_structures + (i < n_atoms % n_structures) for i in range(n_structures)]
    frames = []
    for size in sizes:
        numbers = rng.permutation(np.concatenate([elements, rng.choice(elements, size=size - len(elements))]))
        frames.append(random_triclinic_cell(numbers.astype(int), rng))
    return frames, f"{len(frames)} random periodic triclinic cell(s), 12 Å^3/atom, min distance 1.1 Å"


# --------------------------------------------------------------------------- variants
@dataclass
class TrainVariant:
    name: str
    model: torch.nn.Module
    params: list
    proximal: bool
    optimizer: torch.optim.Optimizer | None = None
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.params)


def train_variants(base: torch.nn.Module) -> list[TrainVariant]:
    last = len(base.interactions) - 1
    full = copy.deepcopy(base)
    for p in full.parameters():
        p.requires_grad_(True)
    out = [TrainVariant("base (full FT)", full, list(full.parameters()), False)]
    configs = [
        ("sparse: all", SparseConfig()),
        ("sparse: skip+contraction", SparseConfig(select=Selector(kinds=("skip", "contraction")))),
        ("lora r=4", LoRAConfig(rank=4)),
        (f"freeze: last layer ({last})", FreezeConfig(select=Selector(layers=(last,)))),
        ("freeze: all (sparseft full FT)", FreezeConfig()),
    ]
    for name, config in configs:
        adapted = sparseft.wrap(base, [config])
        out.append(TrainVariant(name, adapted, adapted.trainable_parameters(), isinstance(config, SparseConfig)))
    for v in out:
        v.optimizer = torch.optim.Adam(v.params, lr=LR)
    return out


def make_targets(model, batch, seed: int):
    out = model(dict(batch), training=False, compute_force=True, compute_stress=False)
    g = torch.Generator().manual_seed(seed)
    energy = out["energy"].detach()
    forces = out["forces"].detach()
    energy = energy + 0.01 * torch.randn(energy.shape, generator=g, dtype=energy.dtype).to(energy.device)
    forces = forces + 0.1 * torch.randn(forces.shape, generator=g, dtype=forces.dtype).to(forces.device)
    return energy, forces


def train_step(v: TrainVariant, batch, targets, n_per_structure) -> None:
    e_t, f_t = targets
    out = v.model(dict(batch), training=True, compute_force=True, compute_stress=False)
    loss = (((out["energy"] - e_t) / n_per_structure) ** 2).mean() + 10.0 * ((out["forces"] - f_t) ** 2).mean()
    v.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    v.optimizer.step()
    if v.proximal:
        v.model.proximal_step(LR)
    if loss.is_cuda:
        torch.cuda.synchronize()  # time the step, not its launch


@torch.no_grad()
def randomize(adapted, seed: int) -> None:
    """Give every adapter parameter a random value (sparse: ~10% non-zero entries)."""
    g = torch.Generator().manual_seed(seed)
    for _, _, part in adapted.all_parts():
        for p in part.parameters():
            values = 0.01 * torch.randn(p.shape, generator=g, dtype=torch.float64)
            if isinstance(part, sparseft.adapters.sparse.SparsePart):
                values *= torch.rand(p.shape, generator=g, dtype=torch.float64) < 0.1
            p.copy_(values.to(p))


@dataclass
class InferVariant:
    name: str
    model: torch.nn.Module
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)


def infer_variants(base: torch.nn.Module, batch, seed: int) -> tuple[list[InferVariant], list[str]]:
    checks = []
    out = [InferVariant("base", base)]
    ref = base(dict(batch), training=False, compute_force=True)
    for label, config in (("sparse: all", SparseConfig()), ("lora r=4", LoRAConfig(rank=4))):
        adapted = sparseft.wrap(base, [config])
        randomize(adapted, seed)
        merged = adapted.merge()
        merged.eval()
        a = adapted(dict(batch), training=False, compute_force=True)
        m = merged(dict(batch), training=False, compute_force=True)
        checks.append(
            f"{label}: |merged - adapted| max force diff {float((a['forces'] - m['forces']).abs().max()):.1e}, "
            f"|merged - base| {float((ref['forces'] - m['forces']).abs().max()):.1e} eV/Å"
        )
        out.append(InferVariant(f"merged ({label})", merged))
        out.append(InferVariant(f"adapted, unmerged ({label})", adapted))
    return out, checks


def infer_step(v: InferVariant, batch, calls: int) -> None:
    for _ in range(calls):
        out = v.model(dict(batch), training=False, compute_force=True, compute_stress=False)
        out["forces"].sum().item()


# --------------------------------------------------------------------------- timing
def interleaved(variants, run, repeats: int, warmup: int) -> None:
    for v in variants:
        for _ in range(warmup):
            run(v)
    for r in range(repeats):
        gc.collect()
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:  # rotate the order each repetition
            t0, c0 = time.perf_counter(), time.process_time()
            run(v)
            v.times.append(time.perf_counter() - t0)
            v.cpu_times.append(time.process_time() - c0)


def quantiles(xs):
    xs = sorted(xs)
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def summarize(variants, per_call: int = 1):
    ref, ref_cpu = variants[0].times, variants[0].cpu_times
    rows = []
    for v in variants:
        t25, t50, t75 = quantiles([t / per_call for t in v.times])
        r25, r50, r75 = quantiles([t / b for t, b in zip(v.times, ref)])
        cpu = statistics.median([t / b for t, b in zip(v.cpu_times, ref_cpu)])
        rows.append(dict(name=v.name, t50=t50, t25=t25, t75=t75, r50=r50, r25=r25, r75=r75, cpu=cpu, variant=v))
    return rows


# --------------------------------------------------------------------------- report
def machine_info(threads: int) -> list[tuple[str, str]]:
    cpu, usable = cpu_model(), usable_cores()
    versions = [f"{pkg} {v}" for pkg, v in installed_versions(("torch", "mace-torch", "e3nn", "numpy")).items()]
    return [
        ("CPU", cpu),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        (
            "torch threads",
            f"{threads} intra-op (torch.set_num_threads), {torch.get_num_threads()} reported, "
            f"{torch.get_num_interop_threads()} inter-op",
        ),
        ("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "(unset)")),
        ("load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("python", platform.python_version()),
        ("packages", ", ".join(versions)),
        ("platform", platform.platform()),
    ]


def fmt_ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def table(rows, *, goal: float | None, kind: str) -> list[str]:
    head = "| variant | trainable params | median ms | IQR ms | ratio to base | ratio IQR | CPU-time ratio | goal |"
    if kind == "infer":
        head = "| variant | median ms | IQR ms | ratio to base | ratio IQR | CPU-time ratio | goal |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, row in enumerate(rows):
        if i == 0:
            status = "reference"
        elif goal is None or (kind == "infer" and not row["name"].startswith("merged")):
            status = "(info)"
        else:
            status = f"{'met' if row['r50'] <= goal else 'MISSED'} (<= {goal:.2f})"
        cells = [row["name"]]
        if kind == "train":
            cells.append(f"{row['variant'].n_trainable:,}")
        cells += [
            fmt_ms(row["t50"]),
            f"{fmt_ms(row['t25'])}-{fmt_ms(row['t75'])}",
            f"{row['r50']:.3f}",
            f"{row['r25']:.3f}-{row['r75']:.3f}",
            f"{row['cpu']:.3f}",
            status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"a mace .model file or one of {sorted(TINY_MODELS)}; repeatable (default: both tiny models)",
    )
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="float32 or float64 (default: float64 for tiny models, the file's own dtype for .model files)",
    )
    p.add_argument(
        "--structures", default=None, help="an ASE-readable file of structures to use instead of random cells"
    )
    p.add_argument("--atoms", type=int, default=None, help="total atoms in the batch (default 64; --quick 32)")
    p.add_argument("--n-structures", type=int, default=2, help="random cells in the batch (default 2)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 15; --quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per variant (default 2; --quick 1)")
    p.add_argument("--infer-calls", type=int, default=3, help="inference calls per variant per repetition (default 3)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: usable cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true", help="a smoke run (~1 minute): 32 atoms, 3 repeats, 1 warm-up")
    p.add_argument(
        "--output", default=str(DEFAULT_OUTPUT), help="markdown record (default benchmarks/results/overhead.md)"
    )
    p.add_argument("--append", action="store_true", help="add this run's section to --output instead of replacing it")
    args = p.parse_args(argv)
    if args.model is None:
        args.model = ["tiny-scalar", "tiny-vector"]
    args.atoms = args.atoms or (32 if args.quick else 64)
    args.repeats = args.repeats or (3 if args.quick else 15)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.threads is None:
        try:
            args.threads = len(os.sched_getaffinity(0))
        except AttributeError:
            args.threads = os.cpu_count() or 1
    return args


def run_case(spec: str, args) -> tuple[list[str], str]:
    torch.manual_seed(args.seed)
    model, desc = build_model(spec, args.dtype, args.device)
    atoms, note = build_structures(model, args.atoms, args.n_structures, args.structures, args.seed)
    batch = atoms_to_batch(atoms, model)
    n_atoms = int(batch["positions"].shape[0])
    n_edges = int(batch["edge_index"].shape[1])
    n_per_structure = (batch["ptr"][1:] - batch["ptr"][:-1]).to(next(model.parameters()).dtype)
    targets = make_targets(model, batch, args.seed)

    print(f"[{spec}: {n_atoms} atoms, {n_edges} edges; timing ...]", flush=True)
    t_start = time.perf_counter()
    trains = train_variants(model)
    interleaved(trains, lambda v: train_step(v, batch, targets, n_per_structure), args.repeats, args.warmup)
    t_train = time.perf_counter() - t_start
    train_rows = summarize(trains)
    del trains
    gc.collect()

    t_start = time.perf_counter()
    infers, checks = infer_variants(model, batch, args.seed)
    interleaved(infers, lambda v: infer_step(v, batch, args.infer_calls), args.repeats, args.warmup)
    t_infer = time.perf_counter() - t_start
    infer_rows = summarize(infers, per_call=args.infer_calls)

    lines = [
        f"### {spec}",
        "",
        f"- model: {desc}",
        f"- batch: {len(atoms)} structures, {n_atoms} atoms, {n_edges} directed edges; {note}",
        "",
    ]
    lines += [
        "**Training step** (forward + forces with create_graph + E/F loss + backward + Adam "
        "[+ proximal step for sparse]), per step:",
        "",
    ]
    lines += table(train_rows, goal=GOAL_TRAINING, kind="train")
    lines += [
        "",
        f"**Inference** (energy + forces, training=False), per call ({args.infer_calls} calls per repetition):",
        "",
    ]
    lines += table(infer_rows, goal=GOAL_INFERENCE, kind="infer")
    lines += [
        "",
        "Checks: " + "; ".join(checks) + ".",
        "",
        f"Wall time: training {t_train:.0f} s, inference {t_infer:.0f} s.",
        "",
    ]
    block = "\n".join(lines)
    print(block, flush=True)
    return lines, spec


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    header = [f"## Run of {started.strftime('%Y-%m-%d %H:%M UTC')}", ""]
    header += [f"- {k}: {v}" for k, v in machine_info(args.threads)]
    if args.device == "cuda":
        header.append(f"- device: cuda ({torch.cuda.get_device_name()})")
    header += [
        f"- command: `{' '.join(['python', 'benchmarks/overhead.py'] + (sys.argv[1:] if argv is None else list(argv)))}`",
        f"- settings: repeats={args.repeats} (interleaved, order rotated each repetition), warm-up={args.warmup} "
        f"per variant, inference calls per repetition={args.infer_calls}, Adam lr={LR}, seed={args.seed}",
        "- medians over repetitions; IQR = interquartile range; ratios are medians of per-repetition ratios "
        "to the base variant measured in the same repetition (wall clock; the goals are judged on it); "
        "CPU-time ratio: the same from process CPU time (all threads), less sensitive to other processes "
        "taking the cores",
        f"- goals: merged inference <= {GOAL_INFERENCE:.2f}x base; adapter training step <= {GOAL_TRAINING:.2f}x "
        "base full fine-tuning",
        "",
    ]
    print("\n".join(header), flush=True)
    body = []
    for spec in args.model:
        lines, _ = run_case(spec, args)
        body += lines
    total = time.perf_counter() - t0
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    footer = [f"Total wall time: {total:.0f} s; load average at the end (1/5/15 min): {load}.", ""]
    print(footer[0])

    section = "\n".join(header + body + footer)
    out = Path(args.output)
    title = "# sparseft overhead benchmark\n\nGenerated by `benchmarks/overhead.py`; see `benchmarks/README.md`.\n\n"
    if args.append and out.exists():
        text = out.read_text().rstrip("\n") + "\n\n" + section
    else:
        text = title + section
    write_atomic(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
