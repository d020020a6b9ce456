"""Frontier benchmark runner (issue 20): error vs stored adapter bytes / changed parameters.

Per (set, method, budget, lr, seed, n) it writes a recipe and runs ``sparseft finetune`` in a
subprocess (one torch thread, ``OMP_WAIT_POLICY=PASSIVE``), caching the summary in
``runs/<id>/results.json`` (a run whose results.json exists is not run again).

Stages (``--stage``, comma-separated; run in this order):

- ``tune``: every method on the lr grid of its family (seed 0, all training frames), selected on
  validation force MAE; with ``--extend`` a method whose best lr is at the grid's edge gets the
  next lr of the half-decade ladder, repeated up to ``--extend-rounds`` times.
- ``seeds``: the selected lr of ``--seed-methods`` rerun with ``--seeds`` (beyond 0).
- ``curves``: learning curves, the selected lr (chosen at n=all) at n in ``--sizes``, all seeds.

Budget: ``train.max_steps`` optimiser steps (``train.epochs`` set high so the steps decide), early
stopping with ``train.patience`` validated epochs; every method keeps sparseft's own defaults
(cosine schedule, no EMA, its sparse mode, clip 10) except the tuned lr; ``data.E0s: estimated``
for all.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/frontier/run.py --grid cpu --sets fe_hcp --stage tune
    .venv/bin/python benchmarks/frontier/run.py --grid full --device cuda --stage tune,seeds,curves
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common as C  # noqa: E402
from processes import run_pool, run_timed, threads_env  # noqa: E402  (benchmarks/processes.py)

_print_lock = threading.Lock()
_prepare_lock = threading.Lock()


def log(msg: str) -> None:
    with _print_lock:
        print(f"[{dt.datetime.utcnow():%H:%M:%S}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------- data
def _label(atoms, key: str, per_atom: bool):
    src = atoms.arrays if per_atom else atoms.info
    if key in src:
        return np.asarray(src[key], dtype=float) if per_atom else float(src[key])
    calc = atoms.calc  # ase moves energy/forces keys into a SinglePointCalculator
    if calc is not None:
        name = "forces" if per_atom else "energy"
        if key in (name, "force" if per_atom else "energy") and name in calc.results:
            v = calc.results[name]
            return np.asarray(v, dtype=float) if per_atom else float(v)
    return None


def _split(n: int, fraction: float, seed: int):
    """sparseft.data.split's index split: (kept, held out)."""
    n_out = int(round(fraction * n))
    if fraction > 0 and n_out == 0:
        n_out = 1
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_out:]), sorted(order[:n_out])


def prepare(ds: C.DataSet, n: int | None, data_dir: Path) -> dict:
    """Write train (first ``n`` of a seeded shuffle of the training split, or all), valid and test
    files with labels under REF_energy/REF_forces; the split is sparseft's own
    (``test_fraction`` with ``split_seed + 1``, then ``valid_fraction`` with ``split_seed``)."""
    from ase.io import read, write

    out = data_dir / ds.name
    names = {k: out / f"{k}.xyz" for k in ("valid", "test")}
    names["train"] = out / ("train.xyz" if n is None else f"train_n{n}.xyz")
    if all(p.exists() for p in names.values()):
        return {k: str(v) for k, v in names.items()}
    out.mkdir(parents=True, exist_ok=True)

    def clean(frames):
        kept = []
        for a in frames:
            if len(a) == 1 and str(a.info.get("config_type", "")).lower() in ("isolatedatom", "isolated_atom"):
                continue
            if ds.max_atoms is not None and len(a) > ds.max_atoms:
                continue
            e, f = _label(a, ds.energy_key, False), _label(a, ds.forces_key, True)
            b = a.copy()
            b.calc = None
            for k in list(b.info):
                if k not in ("config_type",):
                    del b.info[k]
            for k in list(b.arrays):
                if k not in ("numbers", "positions"):
                    del b.arrays[k]
            if e is not None:
                b.info["REF_energy"] = e
            if f is not None:
                b.arrays["REF_forces"] = f
            kept.append(b)
        return kept

    frames = clean(read(ds.path(), ":"))
    if ds.test_source:
        test = clean(read(C.REAL / ds.test_source, ":"))
        rest = frames
    else:
        keep, held = _split(len(frames), ds.test_fraction, ds.split_seed + 1)
        rest, test = [frames[i] for i in keep], [frames[i] for i in held]
    keep, held = _split(len(rest), ds.valid_fraction, ds.split_seed)
    train, valid = [rest[i] for i in keep], [rest[i] for i in held]
    full_train = train
    if n is not None:
        order = np.random.default_rng(1000 + ds.split_seed).permutation(len(train))
        train = [train[i] for i in sorted(order[:n])]
    for k, frames_k in (("train", train), ("valid", valid), ("test", test)):
        tmp = names[k].with_suffix(".tmp.xyz")
        write(tmp, frames_k, format="extxyz")
        os.replace(tmp, names[k])
    meta = {"train_all": len(full_train), "train": len(train), "valid": len(valid), "test": len(test)}
    (out / ("counts.json" if n is None else f"counts_n{n}.json")).write_text(json.dumps(meta))
    return {k: str(v) for k, v in names.items()}


# ----------------------------------------------------------------------------------------- runs
class Runner:
    def __init__(self, args):
        self.args = args
        self.runs = Path(args.runs_dir)
        self.data = Path(args.data_dir)
        self.sets = dict(C.SETS)
        if args.sets_json:  # extra/override set definitions (the smoke test's tiny set)
            for name, spec in json.loads(Path(args.sets_json).read_text()).items():
                self.sets[name] = C.DataSet(name=name, **spec)
        self.deadline = None
        if args.deadline:
            h, m = map(int, args.deadline.split(":"))
            now = dt.datetime.utcnow()
            self.deadline = now.replace(hour=h, minute=m, second=0, microsecond=0)
        self.commit = _git_commit()

    def past_deadline(self) -> bool:
        return self.deadline is not None and dt.datetime.utcnow() >= self.deadline

    def recipe(self, ds, method: C.Method, lr, seed, n, out_dir: Path) -> dict:
        with _prepare_lock:
            files = prepare(ds, n, self.data)
        a = self.args
        train = {
            "lr": lr,
            "epochs": 100000,  # the step budget decides
            "max_steps": a.max_steps,
            "batch_size": ds.batch_size if a.batch_size is None else a.batch_size,
            "patience": a.patience,
            **({} if a.select_on == "loss" else {"select_on": a.select_on}),
            "seed": seed,
            **method.train,
        }
        return {
            "base": {"model": ds.model or a.model, "dtype": a.dtype, "device": a.device},
            "data": {
                **files,
                "energy_key": "REF_energy",
                "forces_key": "REF_forces",
                "E0s": "estimated",
            },
            "adapters": [dict(method.adapter)],
            "train": train,
            "output": {"directory": str(out_dir), "progress_seconds": 600},
        }

    def run_one(self, set_name, method_name, lr, seed, n) -> dict:
        a = self.args
        rid = C.run_id(set_name, method_name, a.max_steps, lr, seed, n, a.device)
        rdir = self.runs / rid
        res_path = rdir / "results.json"
        if res_path.exists():
            r = json.loads(res_path.read_text())
            if r.get("status") == "ok" or not a.retry_failed:
                return r
        if self.past_deadline():
            return {"id": rid, "status": "skipped (deadline)"}
        ds, method = self.sets[set_name], C.ALL_METHODS[method_name]
        if rdir.exists():
            shutil.rmtree(rdir)
        rdir.mkdir(parents=True)
        out_dir = rdir / "out"
        recipe = self.recipe(ds, method, lr, seed, n, out_dir)
        (rdir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        env = threads_env(a.threads)
        cmd = [*shlex.split(a.sparseft), "finetune", str(rdir / "recipe.yaml"), "--quiet", "--overwrite"]
        log(f"start {rid}")
        done = run_timed(cmd, rdir / "stdout.log", cwd=C.REPO, env=env)
        r = {
            "id": rid,
            "set": set_name,
            "method": method_name,
            "lr": lr,
            "seed": seed,
            "n": n,
            "max_steps": a.max_steps,
            "patience": a.patience,
            "select_on": a.select_on,
            "batch_size": recipe["train"]["batch_size"],
            "device": a.device,
            "threads": a.threads,
            "rc": done.returncode,
            "wall_s": round(done.wall_s, 1),
            "cpu_s": round(done.cpu_s, 1),
            "load_before": [round(x, 2) for x in done.load_before],
            "load_after": [round(x, 2) for x in done.load_after],
            "finished_utc": f"{dt.datetime.utcnow():%Y-%m-%d %H:%M:%S}",
            "sparseft_commit": self.commit,
            "command": " ".join(cmd),
            "recipe": recipe,
        }
        metrics_path = out_dir / "metrics.json"
        if done.returncode == 0 and metrics_path.exists():
            m = json.loads(metrics_path.read_text())
            sp = m["splits"]
            r.update(
                status="ok",
                valid=sp.get("valid", {}),
                test=sp.get("test", {}),
                zero_shot=m.get("base_zero_shot", {}),
                changed_parameters=m.get("changed_parameters"),
                trainable_parameters=m.get("trainable_parameters"),
                base_parameters=m.get("base_parameters"),
                density=m.get("density"),
                steps=m.get("steps"),
                epochs=m.get("epochs"),
                best_epoch=m.get("best_epoch"),
                train_wall_s=m.get("wall_time_s"),
                adapter_bytes=_folder_bytes(out_dir / "adapter"),
                valid_forces_curve=valid_forces_curve(out_dir / "history.csv"),
                counts=_counts(self.data / set_name, n),
            )
        else:
            tail = (rdir / "stdout.log").read_text(errors="replace").splitlines()[-15:]
            r.update(status="failed", log_tail=tail)
        tmp = res_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(r, indent=1))
        os.replace(tmp, res_path)
        if not a.keep_outputs:  # bulky, regenerable: checkpoints and the merged model
            shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)
            for f in out_dir.glob("merged.*"):
                f.unlink()
        msg = f"done  {rid}: {r['status']}, wall {done.wall_s:.0f} s, cpu {r['cpu_s']:.0f} s"
        if r["status"] == "ok":
            msg += f", valid F {1000 * r['valid']['forces_mae']:.1f} test F {1000 * r['test']['forces_mae']:.1f} meV/A, steps {r['steps']}"
        log(msg)
        return r

    def run_many(self, tasks) -> list[dict]:
        seen, uniq = set(), []
        for t in tasks:
            if t not in seen:
                seen.add(t)
                uniq.append(t)
        return run_pool(lambda t: self.run_one(*t), uniq, self.args.jobs)

    # ------------------------------------------------------------------------------------ stages
    def grid(self, method_name: str) -> list[float]:
        fam = C.ALL_METHODS[method_name].family
        if self.args.lrs:
            return [float(x) for x in self.args.lrs.split(",")]
        return C.LR_GRID[fam]

    def tune(self, set_name: str):
        methods = self.args.method_list
        if self.args.lr_from:  # reduced grid: each method at the lr selected on another set
            results = C.load_results(self.runs)
            tasks = []
            for m in methods:
                steps = self.args.lr_from_steps or self.args.max_steps
                device = self.args.lr_from_device or self.args.device
                best, _ = C.select_lr(results, self.args.lr_from, m, None, steps, device)
                if best is None:
                    log(f"{m}: no lr selected on {self.args.lr_from} ({steps} steps, {device}) yet: skipped")
                    continue
                tasks.append((set_name, m, best, 0, None))
            self.run_many(tasks)
            return
        # centre of each grid first, so an interrupted run still has every method once
        tasks = []
        for rank in (1, 0, 2):
            for m in methods:
                g = self.grid(m)
                if rank < len(g):
                    tasks.append((set_name, m, g[rank], 0, None))
        tasks += [(set_name, m, lr, 0, None) for m in methods for lr in self.grid(m)]
        self.run_many(tasks)
        for _ in range(self.args.extend_rounds if self.args.extend else 0):
            results = C.load_results(self.runs)
            extra = []
            for m in methods:
                best, scores = C.select_lr(results, set_name, m, None, self.args.max_steps, self.args.device)
                if best is None:
                    continue
                tried = sorted(scores)
                if len(tried) < 3:  # not a grid (a reduced run at one lr): nothing to extend
                    continue
                below, above = C.neighbours(best, tried)
                if best == tried[0] and below is not None:
                    extra.append((set_name, m, below, 0, None))
                elif best == tried[-1] and above is not None:
                    extra.append((set_name, m, above, 0, None))
            if not extra or self.past_deadline():
                break
            log(f"extending grids at the edge: {[(t[1], t[2]) for t in extra]}")
            self.run_many(extra)

    def seeds(self, set_name: str):
        results = C.load_results(self.runs)
        tasks = []
        for m in self.args.seed_method_list:
            best, _ = C.select_lr(results, set_name, m, None, self.args.max_steps, self.args.device)
            if best is not None:
                tasks += [(set_name, m, best, s, None) for s in self.args.seed_list if s != 0]
        self.run_many(tasks)

    def curves(self, set_name: str):
        results = C.load_results(self.runs)
        tasks = []
        for n in self.args.size_list:
            for m in self.args.method_list:
                best, _ = C.select_lr(results, set_name, m, None, self.args.max_steps, self.args.device)
                if best is not None:
                    tasks += [(set_name, m, best, s, n) for s in self.args.seed_list]
        self.run_many(tasks)


def _folder_bytes(path: Path) -> int | None:
    if not path.exists():
        return None
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def valid_forces_curve(history: Path) -> list[float] | None:
    """Validation force MAE (eV/Å) per validated epoch, from the run's ``history.csv``."""
    if not history.exists():
        return None
    with history.open() as f:
        return [round(float(row["valid_forces_mae"]), 6) for row in csv.DictReader(f) if row.get("valid_forces_mae")]


def _counts(folder: Path, n) -> dict:
    p = folder / ("counts.json" if n is None else f"counts_n{n}.json")
    return json.loads(p.read_text()) if p.exists() else {}


def _git_commit() -> str:
    try:
        c = subprocess.run(["git", "rev-parse", "HEAD"], cwd=C.REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "sparseft"], cwd=C.REPO, capture_output=True, text=True
        ).stdout
        return c + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=["cpu", "full"], default="cpu")
    ap.add_argument("--full", dest="grid", action="store_const", const="full", help="same as --grid full")
    ap.add_argument("--stage", default="tune", help="tune,seeds,curves (comma-separated)")
    ap.add_argument("--sets", default=None, help="comma-separated (cpu: fe_hcp,fe_slab; full: all)")
    ap.add_argument("--methods", default=None, help=f"comma-separated of {', '.join(C.ALL_METHODS)}")
    ap.add_argument("--lrs", default=None, help="override the lr grid (comma-separated)")
    ap.add_argument("--seeds", default=None, help="seeds for the seeds/curves stages (cpu: 0,1,2)")
    ap.add_argument("--seed-methods", default="full,sparse-3", help="methods rerun with more seeds (cpu grid)")
    ap.add_argument("--sizes", default="10,50", help="learning-curve training sizes (curves stage)")
    ap.add_argument("--max-steps", type=int, default=None, help="optimiser steps (cpu 60, full 2000)")
    ap.add_argument("--patience", type=int, default=None, help="validated epochs (cpu 2, full 5)")
    ap.add_argument(
        "--select-on",
        default=None,
        help="train.select_on of every run (cpu: loss, as the CPU grid ran; full: forces_mae)",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="override the set's batch size")
    ap.add_argument("--lr-from", default=None, help="tune stage: one run per method at the lr selected on this set")
    ap.add_argument(
        "--lr-from-steps", type=int, default=None, help="--lr-from: the budget of those runs (else --max-steps)"
    )
    ap.add_argument("--lr-from-device", default=None, help="--lr-from: the device of those runs (else --device)")
    ap.add_argument("--extend", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--extend-rounds", type=int, default=2)
    ap.add_argument("--model", default="sevennet:7net-0")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--deadline", default=None, help="HH:MM UTC: start no run after it")
    ap.add_argument(
        "--sparseft",
        default=shlex.quote(str(C.REPO / ".venv" / "bin" / "sparseft")),
        help='the command, e.g. "python3 -m sparseft"',
    )
    ap.add_argument("--runs-dir", default=str(C.RUNS))
    ap.add_argument("--data-dir", default=str(C.DATA))
    ap.add_argument("--sets-json", default=None, help="JSON {name: DataSet fields} adding/overriding sets")
    ap.add_argument("--prepare-only", action="store_true", help="only write the data files of --sets")
    ap.add_argument("--show-recipe", metavar="RUN_ID", default=None, help="print the recipe a cached run used")
    ap.add_argument("--retry-failed", action="store_true")
    ap.add_argument("--keep-outputs", action="store_true", help="keep checkpoints and merged models")
    a = ap.parse_args(argv)
    if a.show_recipe:  # the recipe behind a row of the report (its data files: --prepare-only --sets SET)
        path = Path(a.runs_dir) / a.show_recipe / "results.json"
        if not path.is_file():
            ap.error(f"no cached run {a.show_recipe!r} in {a.runs_dir}")
        print(yaml.safe_dump(json.loads(path.read_text())["recipe"], sort_keys=False), end="")
        return 0
    full = a.grid == "full"
    default_sets = "fe_hcp,fe_slab,zrcho,water,acac,ecemc_xtb,aspirin" if full else "fe_hcp,fe_slab"
    a.set_list = (a.sets or default_sets).split(",")
    a.method_list = (a.methods or ",".join(C.FULL_METHODS if full else C.CPU_METHODS)).split(",")
    a.seed_list = [int(s) for s in (a.seeds or "0,1,2").split(",")]
    a.seed_method_list = a.method_list if full else a.seed_methods.split(",")
    a.size_list = [int(s) for s in a.sizes.split(",") if s]
    a.max_steps = a.max_steps or (2000 if full else 60)
    a.patience = a.patience if a.patience is not None else (5 if full else 2)
    a.select_on = a.select_on or ("forces_mae" if full else "loss")
    for m in a.method_list:
        if m not in C.ALL_METHODS:
            ap.error(f"unknown method {m!r}; known: {', '.join(C.ALL_METHODS)}")
    r = Runner(a)
    if a.prepare_only:  # write the split files (e.g. to carry them to a machine without ../shared)
        for s in a.set_list:
            for n in [None, *a.size_list]:
                log(f"{s} n={n or 'all'}: {prepare(r.sets[s], n, r.data)}")
        return 0
    log(
        f"frontier: grid {a.grid}, sets {a.set_list}, methods {a.method_list}, steps {a.max_steps}, patience "
        f"{a.patience}, jobs {a.jobs}, device {a.device}, {platform.node()}, {os.cpu_count()} cpus"
    )
    for stage in a.stage.split(","):
        for s in a.set_list:
            if r.past_deadline():
                log("deadline reached: no new runs")
                return 0
            log(f"stage {stage}: {s}")
            getattr(r, stage)(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
