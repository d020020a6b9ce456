#!/usr/bin/env python
"""SevenNet-0 fine-tuned on Fe-GAP22 hcp iron: sevenn's own full fine-tune next to sparseft's.

One fixed split of ``../shared/real/data/Fe_GAP22/DB10.xyz`` (198 two-atom hcp cells,
spin-polarised PBE; energy in ``info['energy']``, forces in ``arrays['force']``) into
train/valid/test extxyz files (60/20/20, seed 0), with the labels stored as ASE calculator
results (``SinglePointCalculator``: extxyz ``energy=`` and ``forces``), which both programs read.

Runs (``--runs``, all by default):

1. **sevenn** (``sevenn``): ``sevenn_preset fine_tune > input.yaml`` (sevenn's own fine-tuning
   preset: Huber loss δ=0.01, Adam lr 0.004, ExponentialLR γ=0.99, force weight 1, continue from
   SevenNet-0 with the per-element shift/scale fixed), edited: the split's paths, epochs, batch
   size, seed, ``is_train_stress: false`` (the data has no stress); then ``sevenn train input.yaml
   -s`` with the ``--ref-venv`` environment (sevenn 0.13 with e3nn 0.5.9). The model kept is
   sevenn's ``checkpoint_best.pth`` (best validation loss).
2. **sevenn on shifted energies** (``sevenn-shifted``; ``sevenn-shifted-mse`` with sevenn's MSE
   loss instead of Huber, a diagnostic): the same input on the split's files less SevenNet-0's
   per-element energy offset to the train labels (``shift_ref.py``, sevenn environment): DB10's
   energies have a zero ~3450 eV/atom away from SevenNet-0's, which sevenn's fixed shift cannot
   absorb; this is what sparseft's ``E0s: estimated`` does inside.
3. **sparseft**: ``sparseft convert-sevenn-args input.yaml`` (the same input file, converted:
   ``method: full``, same epochs, batch size, lr, loss weights, seed) with ``data.E0s`` set to
   ``estimated`` (``sparseft-estimated``: refit the per-element shift first, sparseft's usual
   start) or ``foundation`` (``sparseft-foundation``: SevenNet-0's shift kept, as sevenn keeps it:
   the like-for-like run); ``sparseft-estimated-defaults`` also drops the converted loss weights,
   AMSGrad, clipping and schedule for sparseft's defaults. The model kept is ``merged.pth``.
4. **Evaluation**, one code path for every model: ``SevenNetCalculator(model=<checkpoint>)`` in
   the sevenn environment on the (unshifted) test file: force MAE (meV/Å), energy MAE
   (meV/atom), and the energy MAE after one per-element energy offset fitted on the train file's
   residuals (same for every model; it takes the shifted runs' offset back out).

At most ``--jobs`` (default 2) training processes at once, one thread each
(``OMP_NUM_THREADS=1``, ``OMP_WAIT_POLICY=PASSIVE``); CPU time and wall time per run come from
``os.wait4``. Every step is skipped when its output exists (``--force`` redoes them).

Usage::

    .venv/bin/python benchmarks/sevenn_side_by_side.py    # ~50 min on 2 busy cores (load ~8)
    .venv/bin/python benchmarks/sevenn_side_by_side.py --epochs 2 --work /tmp/sbs-smoke --output /tmp/sbs.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model, installed_versions, usable_cores  # noqa: E402  (benchmarks/machine.py)
from processes import ONE_THREAD, run_pool, run_timed  # noqa: E402  (benchmarks/processes.py)

DATA = REPO.parent / "shared" / "real" / "data" / "Fe_GAP22" / "DB10.xyz"

EVAL_SCRIPT = r'''
"""Runs in the sevenn environment: every model through SevenNetCalculator, test and train files."""
import json, sys, time
import numpy as np
import ase.io
import torch
torch.set_num_threads(1)
from sevenn.calculator import SevenNetCalculator

models, train_file, test_file, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def predict(calc, frames):
    e, f, n = [], [], []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        e.append(a.get_potential_energy())
        f.append(a.get_forces())
        n.append(len(a))
    return np.array(e), f, np.array(n)

def labels(frames):
    return (np.array([a.get_potential_energy() for a in frames]), [a.get_forces() for a in frames],
            np.array([len(a) for a in frames]))

train, test = ase.io.read(train_file, ":"), ase.io.read(test_file, ":")
(e_tr, _, n_tr), (e_te, f_te, n_te) = labels(train), labels(test)
results = {}
for name, model in models.items():
    t0 = time.time()
    calc = SevenNetCalculator(model=model, device="cpu")
    pe_te, pf_te, _ = predict(calc, test)
    pe_tr, _, _ = predict(calc, train)
    # one per-element energy offset (least squares on the train residuals; one element here)
    zs = sorted({int(z) for a in train for z in a.numbers})
    A = np.array([[np.sum(a.numbers == z) for z in zs] for a in train], dtype=float)
    offset, *_ = np.linalg.lstsq(A, e_tr - pe_tr, rcond=None)
    B = np.array([[np.sum(a.numbers == z) for z in zs] for a in test], dtype=float)
    dforce = np.concatenate([np.abs(p - r).ravel() for p, r in zip(pf_te, f_te)])
    results[name] = {
        "model": model,
        "test_force_mae_meV_A": 1000 * float(dforce.mean()),
        "test_force_rmse_meV_A": 1000 * float(np.sqrt((dforce ** 2).mean())),
        "test_energy_mae_meV_atom": 1000 * float(np.mean(np.abs(pe_te - e_te) / n_te)),
        "test_energy_mae_offset_fitted_meV_atom": 1000 * float(np.mean(np.abs(pe_te + B @ offset - e_te) / n_te)),
        "train_offset_eV_per_atom": {int(z): float(o) for z, o in zip(zs, offset)},
        "n_test": len(test),
        "seconds": time.time() - t0,
    }
    print(name, json.dumps(results[name]), flush=True)
json.dump(results, open(out, "w"), indent=1)
'''


def log(message: str) -> None:
    print(f"[{_dt.datetime.now(_dt.timezone.utc):%H:%M:%S}] {message}", flush=True)


# ---------------------------------------------------------------- 1. the split


def make_split(work: Path, seed: int) -> dict[str, Path]:
    """train/valid/test extxyz (60/20/20 of DB10, a permutation with ``seed``), labels as calculator results."""
    import ase.io
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    paths = {name: work / f"{name}.extxyz" for name in ("train", "valid", "test")}
    if all(p.is_file() for p in paths.values()):
        return paths
    frames = ase.io.read(DATA, ":")
    order = np.random.default_rng(seed).permutation(len(frames))
    n_train, n_valid = round(0.6 * len(frames)), round(0.2 * len(frames))
    parts = {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }
    for name, idx in parts.items():
        out = []
        for i in sorted(idx.tolist()):
            src = frames[i]
            atoms = src.copy()
            atoms.info = {"config_type": src.info.get("config_type", "Default"), "DB10_index": i}
            for key in list(atoms.arrays):
                if key not in ("numbers", "positions"):
                    del atoms.arrays[key]
            results = getattr(src.calc, "results", {})  # ase >= 3.23 reads extxyz's energy= as a calculator result
            energy = src.info.get("energy", results.get("energy"))
            forces = src.arrays.get("force", results.get("forces"))
            atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=np.array(forces, dtype=float))
            out.append(atoms)
        ase.io.write(paths[name], out, format="extxyz")
    log(f"split: {', '.join(f'{k} {len(v)}' for k, v in parts.items())} frames of {DATA}")
    return paths


# ---------------------------------------------------------------- 2. runs


class Run:
    """One training process: its command, folder, and (after it ends) CPU and wall time."""

    def __init__(self, name: str, argv: list[str], cwd: Path, done: Path, epochs: int):
        self.name, self.argv, self.cwd, self.done, self.epochs = name, argv, cwd, done, epochs
        self.timing_file = cwd / "timing.json"

    def run(self) -> None:
        """Run to the end; write ``timing.json`` (wall, CPU, load) next to its log."""
        self.cwd.mkdir(parents=True, exist_ok=True)
        log(f"{self.name}: started ({shlex.join(self.argv)}) in {self.cwd}")
        done = run_timed(self.argv, self.cwd / "stdout.log", cwd=self.cwd, env=ONE_THREAD)
        timing = {
            "returncode": done.returncode,
            "wall_s": done.wall_s,
            "cpu_s": done.cpu_s,
            "epochs": self.epochs,
            "load_before": done.load_before,
            "load_after": done.load_after,
            "command": shlex.join(self.argv),
            "cwd": str(self.cwd),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        self.timing_file.write_text(json.dumps(timing, indent=1))
        log(f"{self.name}: exit {done.returncode}, wall {done.wall_s:.0f} s, CPU {done.cpu_s:.0f} s")
        if done.returncode != 0:
            tail = (self.cwd / "stdout.log").read_text().splitlines()[-15:]
            log(f"{self.name} failed; last lines of {self.cwd / 'stdout.log'}:\n" + "\n".join(tail))


def run_all(runs: list[Run], jobs: int) -> None:
    """The runs, at most ``jobs`` at once."""
    run_pool(Run.run, runs, jobs)


SHIFT_SCRIPT = r'''
"""Runs in the sevenn environment: SevenNet-0's per-element energy offset to the train labels
(least squares of E_ref - E_SevenNet-0 on the composition, as sparseft's E0s: estimated), and
the split's files with that offset taken off the energies."""
import json, sys
import numpy as np
import ase.io
import torch
torch.set_num_threads(1)
from ase.calculators.singlepoint import SinglePointCalculator
from sevenn.calculator import SevenNetCalculator

work = sys.argv[1]
calc = SevenNetCalculator(model="7net-0", device="cpu")
train = ase.io.read(f"{work}/train.extxyz", ":")
zs = sorted({int(z) for a in train for z in a.numbers})
A = np.array([[np.sum(a.numbers == z) for z in zs] for a in train], dtype=float)
pred = []
for a in train:
    b = a.copy(); b.calc = calc; pred.append(b.get_potential_energy())
ref = np.array([a.get_potential_energy() for a in train])
offset, *_ = np.linalg.lstsq(A, ref - np.array(pred), rcond=None)
for name in ("train", "valid", "test"):
    out = []
    for a in ase.io.read(f"{work}/{name}.extxyz", ":"):
        e, f = a.get_potential_energy(), a.get_forces()
        shift = sum(o * np.sum(a.numbers == z) for z, o in zip(zs, offset))
        b = a.copy(); b.calc = SinglePointCalculator(b, energy=float(e - shift), forces=f)
        out.append(b)
    ase.io.write(f"{work}/{name}_shifted.extxyz", out, format="extxyz")
json.dump({int(z): float(o) for z, o in zip(zs, offset)}, open(f"{work}/shift.json", "w"), indent=1)
print("offset eV/atom", dict(zip(zs, offset.tolist())))
'''


def shifted_split(work: Path, args) -> dict[str, Path]:
    """The split with SevenNet-0's per-element energy offset to the train labels taken off (sevenn keeps
    the checkpoint's shift fixed; this is what sparseft's ``E0s: estimated`` does inside)."""
    paths = {name: work / f"{name}_shifted.extxyz" for name in ("train", "valid", "test")}
    if all(p.is_file() for p in paths.values()) and (work / "shift.json").is_file():
        return paths
    script = work / "shift_ref.py"
    script.write_text(SHIFT_SCRIPT)
    subprocess.run(
        [str(Path(args.ref_venv) / "bin" / "python"), str(script), str(work)],
        check=True,
        env={**os.environ, **ONE_THREAD},
    )
    return paths


def sevenn_input(work: Path, paths: dict, args, name: str = "sevenn", mse: bool = False) -> Path:
    """sevenn's fine_tune preset, as ``sevenn_preset fine_tune`` prints it, with our paths/epochs/batch/seed."""
    import yaml

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    preset = work / "preset_fine_tune.yaml"
    if not preset.is_file():
        text = subprocess.run(
            [str(Path(args.ref_venv) / "bin" / "sevenn_preset"), "fine_tune"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **ONE_THREAD},
        ).stdout
        preset.write_text(text)
    config = yaml.safe_load(preset.read_text())
    config["train"]["epoch"] = args.epochs
    config["train"]["random_seed"] = args.seed
    config["train"]["is_train_stress"] = False  # DB10 has no stress labels
    config["train"].pop("stress_loss_weight", None)
    config["train"]["per_epoch"] = args.epochs  # one extra checkpoint, at the end
    config["train"]["error_record"] = [["Energy", "MAE"], ["Force", "MAE"], ["TotalLoss", "None"]]
    if mse:  # sevenn's own MSE loss in place of the preset's Huber (a diagnostic: sparseft trains MSE)
        config["train"]["loss"] = "mse"
        config["train"].pop("loss_param", None)
    config["data"]["batch_size"] = args.batch_size
    config["data"].pop("data_divide_ratio", None)  # the valid set is given
    config["data"]["load_trainset_path"] = [str(paths["train"])]
    config["data"]["load_validset_path"] = [str(paths["valid"])]
    config["data"]["load_testset_path"] = [str(paths["test"])]
    path = folder / "input.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# sparseft's own training defaults (recipe.TrainSection) in place of the converted sevenn ones
SPARSEFT_DEFAULTS = (
    "loss",
    "huber_delta",
    "energy_weight",
    "forces_weight",
    "amsgrad",
    "clip_grad",
    "scheduler",
    "lr_gamma",
)


def sparseft_recipe(
    work: Path, input_yaml: Path, e0s: str, name: str = "", own_defaults: bool = False, train: dict | None = None
) -> Path:
    """``sparseft convert-sevenn-args input.yaml`` plus the E0s option and an output folder
    (``own_defaults``: sparseft's loss, loss weights, AMSGrad, clipping and schedule instead of the
    converted ones; ``train``: these ``train`` keys in place of the converted ones)."""
    import yaml

    folder = work / (name or f"sparseft-{e0s}")
    folder.mkdir(parents=True, exist_ok=True)
    converted = folder / "converted.yaml"
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "sparseft"), "convert-sevenn-args", str(input_yaml), "-o", str(converted)],
        capture_output=True,
        text=True,
        check=True,
    )
    (folder / "convert-notes.txt").write_text(result.stderr)
    recipe = yaml.safe_load(converted.read_text())
    recipe["data"]["E0s"] = e0s
    if own_defaults:
        for key in SPARSEFT_DEFAULTS:
            recipe["train"].pop(key, None)
    recipe["train"].update(train or {})
    recipe["output"] = {"directory": str(folder / "output")}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# ---------------------------------------------------------------- 3. evaluation and report


def evaluate(work: Path, paths: dict, models: dict, args) -> dict:
    """Each model's test errors, cached per model in ``work/eval/`` (keyed by its file's time stamp);
    the models without a cached result run in at most ``args.jobs`` evaluation processes."""
    import hashlib

    folder = work / "eval"
    folder.mkdir(exist_ok=True)
    script = work / "eval_ref.py"
    script.write_text(EVAL_SCRIPT)

    def stamp(model: str) -> float:
        return os.path.getmtime(model) if os.path.isfile(model) else 0.0

    def cache(name: str) -> Path:
        return folder / (hashlib.sha1(name.encode()).hexdigest()[:12] + ".json")

    results, todo = {}, []
    for name, model in models.items():
        file = cache(name)
        if file.is_file() and not args.force:
            cached = json.loads(file.read_text())
            if cached.get("model") == model and cached.get("stamp") == stamp(model):
                results[name] = cached
                continue
        todo.append(name)
    groups = [todo[i :: max(args.jobs, 1)] for i in range(max(args.jobs, 1))]
    procs = []
    for k, group in enumerate(g for g in groups if g):
        out = folder / f"batch{k}.json"
        argv = [str(Path(args.ref_venv) / "bin" / "python"), str(script), json.dumps({n: models[n] for n in group})]
        argv += [str(paths["train"]), str(paths["test"]), str(out)]
        log(f"evaluating {', '.join(group)} with SevenNetCalculator (sevenn environment)")
        procs.append((out, subprocess.Popen(argv, env={**os.environ, **ONE_THREAD})))
    for out, proc in procs:
        if proc.wait() != 0:
            raise RuntimeError(f"evaluation failed (exit {proc.returncode}); see the output above")
        for name, value in json.loads(out.read_text()).items():
            value["stamp"] = stamp(models[name])
            cache(name).write_text(json.dumps(value, indent=1))
            results[name] = value
        out.unlink()
    return results


def epoch_seconds(run_dir: Path) -> list[float]:
    """Wall seconds of each epoch as the program logged them: sevenn's ``Epoch N elapsed: H:MM:SS``
    (stdout), sparseft's ``epoch i/n ... 51.9s`` (output/train.log). Both include that epoch's
    validation (sevenn's its test-set pass too)."""
    import re

    out = []
    sevenn_log, sparseft_log = run_dir / "stdout.log", run_dir / "output" / "train.log"
    if sparseft_log.is_file():
        for line in sparseft_log.read_text().splitlines():
            m = re.search(r" epoch \d+/\d+ .* ([0-9.]+)s$", line)
            if m:
                out.append(float(m.group(1)))
    elif sevenn_log.is_file():
        for h, mnt, sec in re.findall(r"Epoch \d+ elapsed: (\d+):(\d+):([0-9.]+)", sevenn_log.read_text()):
            out.append(3600 * int(h) + 60 * int(mnt) + float(sec))
    return out


def _over_splits(all_metrics: list[dict]) -> list[str]:
    """One line: sparseft (converted) against sevenn (shifted) in test force MAE over every split."""

    def force(metrics: dict, start: str):
        m = next((m for n, m in metrics.items() if n.startswith(start) and "failed" not in m), None)
        return None if m is None else m["test_force_mae_meV_A"]

    pairs = [
        (force(m, "sparseft full FT, E0s estimated ("), force(m, "sevenn full FT, energies shifted by"))
        for m in all_metrics
    ]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if len(pairs) < 2:
        return []
    ours, theirs = (sum(x) / len(pairs) for x in zip(*pairs))
    ratios = [a / b for a, b in pairs]
    return [
        f"- over all {len(pairs)} splits: sparseft (converted recipe) {ours:.1f} vs sevenn {theirs:.1f} meV/Å "
        f"mean test force MAE ({ours / theirs:.2f}x; per split {min(ratios):.2f}-{max(ratios):.2f}x)."
    ]


def report(work: Path, runs: dict, metrics: dict, commands: list[str], args, replicates=()) -> str:
    versions = installed_versions(["torch", "e3nn", "sevenn", "mace-torch", "ase", "torch-geometric"])
    ref_versions = subprocess.run(
        [
            str(Path(args.ref_venv) / "bin" / "python"),
            "-c",
            "import torch, e3nn, sevenn, ase; print(torch.__version__, e3nn.__version__, sevenn.__version__, ase.__version__)",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    lines = [
        "# SevenNet-0 on Fe-GAP22 hcp iron: sevenn's own full fine-tune next to sparseft's",
        "",
        f"Run {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/sevenn_side_by_side.py` "
        f"(work folder `{work}`). Machine: {cpu_model()}, {usable_cores()} usable cores, {platform.system()}; "
        f"one thread per process (`OMP_NUM_THREADS=1`, `OMP_WAIT_POLICY=PASSIVE`), at most {args.jobs} "
        "training processes at once. Other people's jobs shared the machine: see the load averages.",
        "",
        f"sparseft environment (`.venv`): {', '.join(f'{k} {v}' for k, v in versions.items())} "
        "(sevenn imported with its e3nn check passed, `sparseft/backends/sevennet/_import.py`). "
        f"sevenn environment (`{args.ref_venv}`): "
        + (
            ", ".join(f"{k} {v}" for k, v in zip(("torch", "e3nn", "sevenn", "ase"), ref_versions))
            if ref_versions
            else "?"
        )
        + ".",
        "",
        f"Data: `{DATA.relative_to(REPO.parent)}` (198 hcp Fe two-atom cells, spin-polarised PBE), one split "
        f"60/20/20 with seed {args.seed}: train/valid/test extxyz in `{work}` (labels as calculator results). "
        f"Same for both: {args.epochs} epochs, batch size {args.batch_size}, Adam at lr 0.004 (the preset's), "
        f"the preset's seed replaced by {args.seed}.",
        "",
        "## Test errors (one code path: `SevenNetCalculator(model=...)` in the sevenn environment, test file)",
        "",
        "| model | test force MAE (meV/Å) | test force RMSE (meV/Å) | test energy MAE (meV/atom) | "
        "energy MAE, per-element offset fitted on train (meV/atom) |",
        "|---|---:|---:|---:|---:|",
    ]

    def pair(a: str, b: str, metrics=metrics) -> str:
        """``a`` against ``b`` (labels starting so) in test force and offset-fitted energy MAE."""
        ma = next((m for n, m in metrics.items() if n.startswith(a) and "failed" not in m), None)
        mb = next((m for n, m in metrics.items() if n.startswith(b) and "failed" not in m), None)
        if ma is None or mb is None:
            return ""
        fa, fb = ma["test_force_mae_meV_A"], mb["test_force_mae_meV_A"]
        ea, eb = ma["test_energy_mae_offset_fitted_meV_atom"], mb["test_energy_mae_offset_fitted_meV_atom"]
        return f"force MAE {fa:.1f} vs {fb:.1f} meV/Å ({fa / fb:.2f}x), energy MAE {ea:.1f} vs {eb:.1f} meV/atom"

    summary = [
        (
            "sparseft (converted recipe, E0s estimated) against sevenn (energies shifted)",
            pair("sparseft full FT, E0s estimated (", "sevenn full FT, energies shifted by"),
        ),
        (
            "sparseft (E0s estimated, sparseft's defaults) against sevenn (energies shifted)",
            pair("sparseft full FT, E0s estimated, sparseft's", "sevenn full FT, energies shifted by"),
        ),
        (
            "sparseft with a constant lr against sparseft (converted, ExponentialLR)",
            pair("sparseft full FT, E0s estimated, constant lr", "sparseft full FT, E0s estimated ("),
        ),
        (
            "sevenn with MSE against sevenn with Huber (both energies shifted)",
            pair("sevenn full FT, energies shifted, MSE", "sevenn full FT, energies shifted by"),
        ),
        (
            "sparseft (E0s foundation) against sevenn (preset as is): like for like, both unshifted",
            pair("sparseft full FT, E0s foundation", "sevenn full FT, preset as is"),
        ),
    ]
    lines[
        lines.index(
            "## Test errors (one code path: `SevenNetCalculator(model=...)` in the sevenn environment, test file)"
        ) : lines.index(
            "## Test errors (one code path: `SevenNetCalculator(model=...)` in the sevenn environment, test file)"
        )
    ] = (
        ["## Summary (test set)", ""]
        + [f"- {what}: {text}." for what, text in summary if text]
        + [
            f"- replicate (split and seed {seed}), sparseft (converted recipe, E0s estimated) against sevenn "
            f"(energies shifted): {pair('sparseft full FT, E0s estimated (', 'sevenn full FT, energies shifted by', m)}."
            for seed, _w, _t, m, _c in replicates
        ]
        + _over_splits([metrics] + [m for _s, _w, _t, m, _c in replicates])
        + [""]
    )

    def rows(metrics: dict) -> list[str]:
        out = []
        for name, m in metrics.items():
            if "failed" in m:
                out.append(f"| {name} | no model: `{m['failed'][:150]}` | | | |")
                continue
            out.append(
                f"| {name} | {m['test_force_mae_meV_A']:.1f} | {m['test_force_rmse_meV_A']:.1f} | "
                f"{m['test_energy_mae_meV_atom']:.1f} | {m['test_energy_mae_offset_fitted_meV_atom']:.1f} |"
            )
        return out

    header = lines[-2:]
    lines += rows(metrics)
    for seed, sub_work, sub_runs, sub_metrics, _commands in replicates:
        lines += [
            "",
            f"Replicate: the same on another split and training seed ({seed}; work folder `{sub_work}`, "
            f"`--seed {seed} --runs sevenn-shifted,sparseft-estimated`):",
            "",
            *header,
            *rows(sub_metrics),
        ]
        runs = {**runs, **{f"{name} (seed {seed})": t for name, t in sub_runs.items()}}
    lines += [
        "",
        "## Time (whole process: start-up, data, training, validation each epoch, final evaluation)",
        "",
        "| run | epochs | wall s | CPU s | wall s / epoch | CPU s / epoch | logged epoch wall s (median, min-max) "
        "| load avg before | load avg after |",
        "|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for name, t in runs.items():
        lb = "/".join(f"{x:.1f}" for x in t["load_before"])
        la = "/".join(f"{x:.1f}" for x in t["load_after"])
        logged = epoch_seconds(Path(t["cwd"]))
        per_epoch = f"{statistics.median(logged):.0f} ({min(logged):.0f}-{max(logged):.0f})" if logged else "-"
        lines.append(
            f"| {name} | {t['epochs']} | {t['wall_s']:.0f} | {t['cpu_s']:.0f} | {t['wall_s'] / t['epochs']:.1f} | "
            f"{t['cpu_s'] / t['epochs']:.1f} | {per_epoch} | {lb} | {la} |"
        )
    shift_file = work / "shift.json"
    offset = (
        ", ".join(f"Z={z}: {v:.3f} eV/atom" for z, v in json.loads(shift_file.read_text()).items())
        if shift_file.is_file()
        else "?"
    )
    lines += [
        "",
        "## Reading the rows",
        "",
        "- DB10's energies have a zero far from SevenNet-0's (MPtrj PBE): the least-squares per-element offset of "
        f"the train labels to SevenNet-0's predictions is {offset}. sevenn's fine-tune keeps the checkpoint's "
        "per-element shift and scale fixed (`train_shift_scale: False`), so with the preset as is the weights "
        "must absorb that offset: the like-for-like pair is *sevenn, preset as is* and *sparseft, E0s foundation* "
        "(both keep SevenNet-0's shift and train with Huber, which caps each term's gradient).",
        "- The pair that compares the fine-tunes themselves is *sevenn, energies shifted* (the split's energies less "
        "that offset, `shift_ref.py`; evaluated against the original labels, so its raw energy column carries the "
        "offset and the offset-fitted column does not) and *sparseft, E0s estimated* (sparseft refits the same "
        "offset into SevenNet-0's shift before training).",
        "- *sevenn, energies shifted, MSE loss*: the same sevenn run with `loss: mse` (sevenn's own MSE) in place of "
        "the preset's Huber: a diagnostic of what the loss alone changes. *sparseft, constant lr* and *sparseft, MSE "
        "loss, constant lr*: the converted recipe with `train.scheduler: constant` (and `train.loss: mse`): what "
        "the schedule and the loss change on sparseft's side (the converter mapped neither before this round).",
        "- *sparseft, E0s estimated, sparseft's loss weights/schedule*: the converted recipe less its energy/force "
        "weights, AMSGrad, clipping and schedule, i.e. sparseft's defaults (energy:force 100:10 MSE, Adam with AMSGrad, "
        "gradient clipping 10, cosine schedule); same epochs, batch size, lr and seed.",
        "- Force errors do not depend on any energy offset; the last column fits one per-element offset on the "
        "train file's residuals for every model alike.",
        "- sevenn keeps `checkpoint_best.pth` (lowest validation Huber loss); sparseft keeps the epoch with the "
        "lowest validation loss (the same Huber loss) that is no worse than zero-shot where one is. sevenn: Huber "
        "(δ=0.01), Adam, ExponentialLR (γ=0.99) stepped once an epoch; sparseft (the converted recipe): the same "
        "(`train.loss: huber`, `huber_delta: 0.01`, `scheduler: exponential`, `lr_gamma: 0.99`), Adam without "
        "AMSGrad, no gradient clipping, energy:force weights 1:1 as in the preset.",
        "- Times: other jobs shared this 2-core machine (load averages in the table), so wall times are stretched "
        "and vary between epochs; CPU seconds are the steadier measure of each program's cost.",
    ]
    lines += ["", "## Commands", "", "```bash", *commands, "```", ""]
    for title, file in (
        ("sevenn's input (the preset, edited)", work / "sevenn" / "input.yaml"),
        ("The recipe `convert-sevenn-args` wrote from it", work / "sparseft-estimated" / "converted.yaml"),
    ):
        if file.is_file():
            lines += [f"## {title}: `{file}`", "", "```yaml", file.read_text().rstrip(), "```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/sevenn-side-by-side", help="work folder (split, runs, logs)")
    parser.add_argument("--ref-venv", default="/tmp/ref-venv", help="the environment with sevenn and e3nn 0.5.x")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="training processes at once")
    parser.add_argument(
        "--runs",
        default="sevenn,sevenn-shifted,sevenn-shifted-mse,sparseft-estimated,sparseft-foundation,"
        "sparseft-estimated-constant-lr,sparseft-estimated-mse,sparseft-estimated-defaults",
    )
    parser.add_argument("--force", action="store_true", help="redo steps whose outputs exist")
    parser.add_argument(
        "--replicate-seeds",
        default="1",
        help="comma-separated seeds: for each, the split and training seed changed, sevenn (energies shifted) and "
        "sparseft (E0s estimated) again in WORK-seed<N>, as a replicate section ('' for none)",
    )
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "sevenn_side_by_side.md"))
    args = parser.parse_args(argv)
    main_run = pipeline(args)
    replicates = []
    for seed in [int(x) for x in args.replicate_seeds.split(",") if x.strip()]:
        sub = argparse.Namespace(**vars(args))
        sub.seed, sub.runs = (
            seed,
            "sevenn-shifted,sparseft-estimated,sparseft-estimated-constant-lr,sparseft-estimated-mse",
        )
        sub.work = f"{Path(args.work).resolve()}-seed{seed}"
        replicates.append((seed, *pipeline(sub)))
    text = report(*main_run, args, replicates)
    Path(args.output).write_text(text)
    log(f"wrote {args.output}")
    return 0


def pipeline(args) -> tuple:
    """Split, runs, evaluation for ``args``: ``(work, timings, results, commands)``."""
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    wanted = args.runs.split(",")

    paths = make_split(work, args.seed)
    input_yaml = sevenn_input(work, paths, args)
    sevenn_bin = str(Path(args.ref_venv) / "bin" / "sevenn")
    runs, commands = (
        [],
        [
            f"# all of it: .venv/bin/python benchmarks/sevenn_side_by_side.py --work {work} --epochs {args.epochs} "
            f"--batch-size {args.batch_size} --seed {args.seed} --jobs {args.jobs}; step by step:",
            f"{Path(args.ref_venv) / 'bin' / 'sevenn_preset'} fine_tune > {work}/preset_fine_tune.yaml",
            f"# edited into {input_yaml}: epoch {args.epochs}, random_seed {args.seed}, batch_size {args.batch_size}, "
            "is_train_stress false (and no stress_loss_weight), per_epoch, error_record (MAE), the split's paths, "
            "no data_divide_ratio (the valid set is given)",
        ],
    )
    if "sevenn" in wanted:
        run = Run(
            "sevenn",
            [sevenn_bin, "train", str(input_yaml), "-s"],
            work / "sevenn",
            work / "sevenn" / "checkpoint_best.pth",
            args.epochs,
        )
        runs.append(run)
        commands.append(f"(cd {run.cwd} && {shlex.join(run.argv)})")
    for name, mse in (("sevenn-shifted", False), ("sevenn-shifted-mse", True)):
        if name not in wanted:
            continue
        shifted = shifted_split(work, args)
        shifted_yaml = sevenn_input(work, shifted, args, name, mse=mse)
        run = Run(
            name,
            [sevenn_bin, "train", str(shifted_yaml), "-s"],
            shifted_yaml.parent,
            shifted_yaml.parent / "checkpoint_best.pth",
            args.epochs,
        )
        runs.append(run)
        if not mse:
            commands.append(
                f"{Path(args.ref_venv) / 'bin' / 'python'} {work}/shift_ref.py {work}  # *_shifted.extxyz, shift.json"
            )
        commands.append(
            f"(cd {run.cwd} && {shlex.join(run.argv)})  # input.yaml as above, the *_shifted files"
            + (", loss: mse (no loss_param)" if mse else "")
        )
    variants = {  # run name -> (E0s, sparseft's own training defaults, train keys in place of the converted)
        "sparseft-estimated": ("estimated", False, {}),
        "sparseft-foundation": ("foundation", False, {}),
        "sparseft-estimated-constant-lr": ("estimated", False, {"scheduler": "constant"}),
        "sparseft-estimated-mse": ("estimated", False, {"loss": "mse", "scheduler": "constant"}),
        "sparseft-estimated-defaults": ("estimated", True, {}),
    }
    for name, (e0s, own, train) in variants.items():
        if name not in wanted:
            continue
        recipe = sparseft_recipe(work, input_yaml, e0s, name, own, train)
        argv = [str(REPO / ".venv" / "bin" / "sparseft"), "finetune", str(recipe), "--quiet"]
        if args.force:
            argv.append("--overwrite")
        run = Run(name, argv, recipe.parent, recipe.parent / "output" / "merged.pth", args.epochs)
        runs.append(run)
        commands.append(
            f"{REPO / '.venv/bin/sparseft'} convert-sevenn-args {input_yaml} -o {recipe.parent}/converted.yaml"
            f"  # + data.E0s: {e0s}, output.directory"
            + (f", without train.{', '.join(SPARSEFT_DEFAULTS)} (sparseft's defaults)" if own else "")
            + "".join(f", train.{k}: {v}" for k, v in train.items())
            + f" -> {recipe}"
        )
        commands.append(shlex.join(argv))

    def finished(r: Run) -> bool:  # a model, or a run that failed (its error goes in the report; --force reruns it)
        return r.timing_file.is_file() and (
            r.done.is_file() or json.loads(r.timing_file.read_text())["returncode"] != 0
        )

    todo = [r for r in runs if args.force or not finished(r)]
    run_all(todo, args.jobs)
    failed = {}
    for r in runs:
        if not r.done.is_file():  # a run that diverged or crashed: its last log line goes in the report
            lines = (r.cwd / "stdout.log").read_text().strip().splitlines() if (r.cwd / "stdout.log").is_file() else []
            failed[r.name] = lines[-1] if lines else "no log"
            log(f"no model from {r.name}: {failed[r.name]}")

    models = {"SevenNet-0 zero-shot": "7net-0"}
    labels = {
        "sevenn": "sevenn full FT, preset as is (`checkpoint_best.pth`)",
        "sevenn-shifted": "sevenn full FT, energies shifted by SevenNet-0's offset (`checkpoint_best.pth`)",
        "sevenn-shifted-mse": "sevenn full FT, energies shifted, MSE loss instead of Huber (`checkpoint_best.pth`)",
        "sparseft-estimated": "sparseft full FT, E0s estimated (`merged.pth`)",
        "sparseft-foundation": "sparseft full FT, E0s foundation (`merged.pth`)",
        "sparseft-estimated-constant-lr": "sparseft full FT, E0s estimated, constant lr (`merged.pth`)",
        "sparseft-estimated-mse": "sparseft full FT, E0s estimated, MSE loss, constant lr (`merged.pth`)",
        "sparseft-estimated-defaults": "sparseft full FT, E0s estimated, sparseft's loss weights/schedule (`merged.pth`)",
    }
    models.update({labels[r.name]: str(r.done) for r in runs if r.name not in failed})
    metrics = evaluate(work, paths, models, args)
    commands.append(
        f'{Path(args.ref_venv) / "bin" / "python"} {work}/eval_ref.py \'{{"<name>": "<checkpoint>", ...}}\' '
        f"{paths['train']} {paths['test']} <out.json>  # per model, cached in {work}/eval/"
    )
    timings = {}
    for r in runs:
        if r.timing_file.is_file():
            timings[r.name] = {**json.loads(r.timing_file.read_text()), "cwd": str(r.cwd)}
    results = {k: metrics[k] for k in models}
    results.update({labels[name]: {"failed": why} for name, why in failed.items()})
    return work, timings, results, commands


if __name__ == "__main__":
    sys.exit(main())
