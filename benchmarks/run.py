#!/usr/bin/env python
"""sparseft against mace-torch's own fine-tuning (``mace_run_train``), side by side, on real data.

For each data set, every method fine-tunes the same base model file on the same train /
valid split files, with the same seed, epochs, batch size, learning rate, loss weights
and E0s, one training process at a time with exactly one torch thread:

- sparseft (``sparseft.run.run`` with a recipe built from a dict, in a subprocess):
  sparse delta at 0.5 / 1 / 3 / 10 % density, LoRA rank 2 / 4 / 8, freeze (readouts only;
  last interaction + product + readouts), full fine-tuning, and training from scratch
  with the same architecture (a re-initialised copy of the base);
- mace-torch (``mace_run_train`` subprocess, its own CLI): naive fine-tuning from the same
  ``--foundation_model`` file, ``--freeze 6`` (readouts only), ``--freeze 5`` (products +
  readouts) and ``--lora True --lora_rank 2 / 4 / 8``.

Every final model (sparseft's ``merged.model``, mace's ``<name>.model``) is then evaluated
by this script, with one code path: test energy MAE per atom and force MAE; forgetting,
i.e. the error on the base model's original level of theory (with the base's E0s put
back) before and after; trainable and actually changed parameters (weights that differ
from the base); adapter / model file bytes; wall time per epoch (time between consecutive
epoch log lines of the training process, as seen on its unbuffered stdout, median; both
tools validate once per epoch inside that interval) and its ratio to ``mace_run_train``'s
full fine-tune; peak RSS of the training process (``os.wait4``).

Data sets (paths configurable; real data is read in place, never copied into the repo):

1. ``ecemc``: ``models/mace_tutorial_ECEMC_xtb_mace01_swa.model`` (GFN2-xTB) fine-tuned on
   ``data/mace_tutorial_solvent/ECEMC.xyz`` (periodic EC/EMC liquid boxes, another level of
   theory); forgetting on ``solvent_xtb_test.xyz`` (GFN2-xTB).
2. ``domain``: the embedded mini-foundation (EMT-pretrained) on the quick-start Cu-Au
   GFN1-xTB set; forgetting on held-out EMT structures made with the generator of
   ``scripts/make_foundation.py`` (another seed).
3. ``magnetic`` (sparseft only: ``mace_run_train`` 0.3.16 has no magnetic-moment head): the
   ecemc base with a collinear moment head on the spin populations of
   ``examples/data/hco_radicals`` (the settings of ``recipes/hco-magmom-head.yaml``), xTB
   replay frames in ``data.train``; trunk settings head only / sparse 1 % and 3 % / LoRA r=4 /
   full, and sparse 3 % without replay; forgetting = the foundation head's xTB errors on 200
   random frames of ``solvent_xtb_test.xyz``.

Learning curves (training-set sizes, nested subsets) run for the best sparse and LoRA
settings (lowest validation force MAE in the main comparison) and full fine-tuning.

Every run is cached as ``<work-dir>/<dataset>/runs/<run>/result.json`` (with a hash of its
settings): a second invocation skips finished runs, so a crash loses at most the run in
progress. The report (``<output-dir>/<name>.md`` + PNG plots) is rewritten after every data
set; text between ``<!-- discussion:start -->`` and ``<!-- discussion:end -->`` in an
existing report is kept.

The work is done by the package ``benchmarks/finetune_bench`` (one job per module, listed in
its ``__init__``); this file holds the arguments and the loop over data sets.

Usage::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/run.py --quick          # a few minutes
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/run.py                  # the full run
    .venv/bin/python benchmarks/run.py --report-only                             # rebuild report/plots
"""

from __future__ import annotations

import os

# Before torch loads: passive OpenMP waiting (no spinning on a shared 2-core machine) and
# one thread unless --threads says otherwise (re-set below from the arguments).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime as _dt  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from finetune_bench.config import (  # noqa: E402
    DEFAULT_REAL,
    FULL,
    HEAD_METHOD_BY_KEY,
    QUICK,
    QUICK_HEAD_METHODS,
    QUICK_METHODS,
    RESULTS,
    selected_head_methods,
    selected_methods,
)
from finetune_bench.data import prepare_domain, prepare_ecemc, prepare_magnetic  # noqa: E402
from finetune_bench.provenance import git_state, machine_info, prepare_sparseft_source  # noqa: E402
from finetune_bench.report import write_report  # noqa: E402
from finetune_bench.runs import Runner  # noqa: E402
from finetune_bench.suite import load_cached, load_cached_heads, run_heads_task, run_task  # noqa: E402
from finetune_bench.util import log, write_json  # noqa: E402
from finetune_bench.worker import worker_main  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a few minutes: tiny splits, 2 epochs, 5 methods")
    p.add_argument(
        "--protocol",
        choices=("fixed", "converged"),
        default="fixed",
        help="fixed: the epoch budgets below; converged: early stopping, lr search, 3 seeds "
        "(finetune_bench/converged.py; data sets ecemc, domain, aspirin, acac)",
    )
    p.add_argument(
        "--lr-grid",
        default=None,
        help="converged: comma list of learning rates for every method (default: full fine-tuning "
        "1e-3,3e-3,1e-2; parameter-efficient methods 3e-3,1e-2,3e-2)",
    )
    p.add_argument(
        "--dataset-source",
        default=None,
        help="converged: NAME=git:REV[,...]: another sparseft snapshot for a data set or a method (runs "
        "cached under an earlier snapshot stay usable; the report says which snapshot made what)",
    )
    p.add_argument("--lc-sizes", default=None, help="converged: learning-curve sizes besides the main one (10,100)")
    p.add_argument("--seeds", default=None, help="converged: comma list of seeds (default 0,1,2)")
    p.add_argument("--name", default=None, help="report name: results/<name>.md (default finetune, or finetune-quick)")
    p.add_argument("--datasets", default="ecemc,domain,magnetic", help="comma list of ecemc, domain, magnetic")
    p.add_argument(
        "--methods",
        default=None,
        help=f"comma list (default: all; --quick: {','.join(QUICK_METHODS)}; "
        f"magnetic: {', '.join(HEAD_METHOD_BY_KEY)}, --quick: {','.join(QUICK_HEAD_METHODS)})",
    )
    p.add_argument("--real-dir", default=str(DEFAULT_REAL), help="the shared real data (default ../shared/real)")
    p.add_argument(
        "--ecemc-model", default=None, help="base model for ecemc (default <real>/models/mace_tutorial_...model)"
    )
    p.add_argument(
        "--ecemc-data", default=None, help="target data (default <real>/data/mace_tutorial_solvent/ECEMC.xyz)"
    )
    p.add_argument("--ecemc-forget", default=None, help="original-theory data (default .../solvent_xtb_test.xyz)")
    p.add_argument("--domain-model", default="embedded", help="base for domain: 'embedded' or a .model path")
    p.add_argument(
        "--domain-dir", default=None, help="folder with train/valid/test.xyz (default: sparseft's embedded domain set)"
    )
    p.add_argument("--magnetic-model", default=None, help="base for magnetic (default: the ecemc base model)")
    p.add_argument(
        "--magnetic-dir", default=None, help="moment data, train/valid/test.xyz (default examples/data/hco_radicals)"
    )
    p.add_argument("--magnetic-replay", default=None, help="xTB replay frames (default .../solvent_xtb_train_200.xyz)")
    p.add_argument("--magnetic-forget", default=None, help="xTB forgetting source (default .../solvent_xtb_test.xyz)")
    p.add_argument("--epochs", type=int, default=None, help="override every data set's epochs")
    p.add_argument("--train-size", type=int, default=None, help="override the main comparison's training-set size")
    p.add_argument("--lr", type=float, default=None, help="override the learning rate (not for scratch)")
    p.add_argument("--no-learning-curves", action="store_true")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--emt-seed", type=int, default=20251122, help="seed of the held-out EMT structures")
    p.add_argument("--threads", type=int, default=1, help="torch threads per training process (default 1)")
    p.add_argument("--work-dir", default=None, help="scratch + cache (default /tmp/sparseft-bench/<name>)")
    p.add_argument("--output-dir", default=str(RESULTS))
    p.add_argument("--mace-train", default=str(Path(sys.executable).parent / "mace_run_train"))
    p.add_argument(
        "--sparseft-source",
        default="installed",
        help="'installed' (import sparseft as is) or 'git:REV' (a snapshot of sparseft/ at REV)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per training run")
    p.add_argument("--rerun", action="store_true", help="ignore cached runs")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from cached runs only")
    args = p.parse_args(argv)
    if args.protocol == "converged":
        args.name = args.name or ("converged-quick" if args.quick else "converged")
        if args.datasets == p.get_default("datasets"):
            args.datasets = "ecemc,domain,aspirin,acac"
    args.name = args.name or ("finetune-quick" if args.quick else "finetune")
    args.work_dir = Path(args.work_dir or Path(tempfile.gettempdir()) / "sparseft-bench" / args.name)
    return args


def main(argv=None) -> int:
    if argv is None and len(sys.argv) >= 2 and sys.argv[1] == "_worker":
        return worker_main(sys.argv[2])
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    started = time.perf_counter()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    sparseft_path, sparseft_desc = prepare_sparseft_source(args.sparseft_source, args.work_dir)
    if sparseft_path:
        sys.path.insert(0, sparseft_path)
    import torch

    torch.set_num_threads(args.threads)
    import sparseft

    log(
        f"sparseft from {Path(sparseft.__file__).parent}; work dir {args.work_dir}; torch threads {torch.get_num_threads()}"
    )
    budgets = copy.deepcopy(QUICK if args.quick else FULL)
    for b in budgets.values():
        if args.epochs:
            b["epochs"] = args.epochs
        if args.train_size:
            b["n_train"] = args.train_size
        if args.lr:
            b["lr"] = args.lr
    if args.protocol == "converged":
        return converged_main(args, started, sparseft_path)
    methods = selected_methods(args)
    head_methods = selected_head_methods(args)
    runner = Runner(args, sparseft_path)
    state: dict = {}
    session_file = args.work_dir / "session.json"
    sessions = json.loads(session_file.read_text()) if session_file.is_file() else {"seconds": 0.0}
    loads = [os.getloadavg()[0]]

    def meta():
        now_runs = [r for i in state.values() for r in i.get("main", []) + i.get("lc", []) + i.get("runs", [])]
        for r in now_runs:
            loads.extend([r.get("loadavg_before", [loads[0]])[0], r.get("loadavg_after", [loads[0]])[0]])
        session_s = time.perf_counter() - started
        return {
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": machine_info(args.threads),
            "command": "OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/run.py " + shlex.join(sys.argv[1:]),
            "sparseft_source": sparseft_desc
            if not args.report_only or not sessions.get("history")
            else "; ".join(sorted({h.get("sparseft_source", "?") for h in sessions["history"]})),
            "git": git_state(),
            "load_min": min(loads),
            "load_max": max(loads),
            "n_runs": len(now_runs),
            "train_s": sum(r.get("wall_s", 0) for r in now_runs),
            "train_cpu_s": sum(r.get("cpu_user_s", 0) + r.get("cpu_sys_s", 0) for r in now_runs),
            "total_s": sessions["seconds"] + session_s,
            "session_s": session_s,
            "session_runs": runner.session_runs,
            "history": sessions.get("history", []),
        }

    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name not in budgets:
            raise SystemExit(f"--datasets: unknown {name!r}")
        budget = budgets[name]
        if name == "magnetic":  # sparseft only: mace_run_train has no magnetic-moment head
            task = prepare_magnetic(args, budget, args.work_dir)
            if args.report_only:
                state[name] = load_cached_heads(task, head_methods)
            else:
                run_heads_task(task, runner, head_methods, state)
            write_report(state, args, meta(), Path(args.output_dir))
            continue
        if name == "ecemc":
            task = prepare_ecemc(args, budget, args.work_dir)
        else:
            task = prepare_domain(args, budget, args.work_dir)
        if args.report_only:
            state[name] = load_cached(task, methods, budget)
        else:
            run_task(task, runner, methods, args, state)
        write_report(state, args, meta(), Path(args.output_dir))
    final = meta()
    if not args.report_only:
        sessions["seconds"] = final["total_s"]
        sessions.setdefault("history", []).append(
            {
                "date": final["date"],
                "command": final["command"],
                "minutes": round(final["session_s"] / 60, 1),
                "runs": runner.session_runs,
                "sparseft_source": sparseft_desc,
            }
        )
        write_json(session_file, sessions)
    path = write_report(state, args, final, Path(args.output_dir))
    log(f"report: {path} ({(time.perf_counter() - started) / 60:.1f} min this invocation)")
    return 0


class SourceRouter:
    """The converged protocol's runner: a method's own snapshot (``--dataset-source METHOD=...``),
    else the data set's, else ``--sparseft-source``."""

    def __init__(self, runners: dict):
        self.runners = runners

    @classmethod
    def from_args(cls, args, names: list[str], sparseft_path: str | None, methods: dict) -> "SourceRouter":
        """One runner per data set on ``--sparseft-source``, replaced by ``--dataset-source`` entries."""
        runners = {name: Runner(args, sparseft_path) for name in names}
        for item in filter(None, (args.dataset_source or "").split(",")):
            name, _, spec = item.partition("=")
            if name not in runners and name not in methods:
                raise SystemExit(f"--dataset-source: {name!r} is neither in --datasets nor a method")
            own = copy.copy(args)
            own.sparseft_source = spec
            runners[name] = Runner(own, prepare_sparseft_source(spec, args.work_dir)[0])
        return cls(runners)

    def run(self, task, ev, method, *rest):
        runner = self.runners.get(method.key) or self.runners[task.name]
        return runner.run(task, ev, method, *rest)


def _converged_protocol(args, base: dict) -> dict:
    """The protocol with the ``--lr-grid`` / ``--lc-sizes`` / ``--seeds`` overrides."""
    protocol = dict(base)
    if args.lr_grid:
        protocol["lr_grid"] = protocol["peft_lr_grid"] = tuple(float(x) for x in args.lr_grid.split(","))
    if args.lc_sizes is not None:
        protocol["lc_sizes"] = tuple(int(x) for x in args.lc_sizes.split(",") if x)
    if args.seeds:
        protocol["seeds"] = tuple(int(x) for x in args.seeds.split(","))
    return protocol


def converged_main(args, started: float, sparseft_path: str | None) -> int:
    """``--protocol converged``: early stopping, lr chosen on validation, seeds; cached runs resume."""
    from finetune_bench.converged import (
        BUDGETS,
        CONVERGED_METHODS,
        EPOCH_CAP,
        PROTOCOL,
        QUICK_BUDGETS,
        QUICK_PROTOCOL,
        run_converged,
        run_learning_curves,
    )
    from finetune_bench.converged_report import write_converged_report
    from finetune_bench.data import prepare_molecule

    protocol = _converged_protocol(args, QUICK_PROTOCOL if args.quick else PROTOCOL)
    budgets = copy.deepcopy(QUICK_BUDGETS if args.quick else BUDGETS)
    keys = args.methods.split(",") if args.methods else list(CONVERGED_METHODS)
    unknown = [k for k in keys if k not in CONVERGED_METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; valid: {', '.join(CONVERGED_METHODS)}")
    methods = [CONVERGED_METHODS[k] for k in keys]
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    router = SourceRouter.from_args(args, names, sparseft_path, CONVERGED_METHODS)
    state: dict = {}
    loads = [os.getloadavg()[0]]
    path = Path(args.output_dir) / f"{args.name}.md"

    def report():
        loads.append(os.getloadavg()[0])
        meta = {
            "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "machine": machine_info(args.threads),
            "command": "benchmarks/run.py " + shlex.join(sys.argv[1:]),
            "load_min": min(loads),
            "load_max": max(loads),
            "sources": {n: r.args.sparseft_source for n, r in router.runners.items()},
            "protocol": f"epoch cap {protocol['max_epochs']} (ecemc {EPOCH_CAP.get('ecemc')}), patience "
            f"{protocol['patience']}, lr grid {list(protocol['lr_grid'])} for full fine-tuning and "
            f"{list(protocol.get('peft_lr_grid', protocol['lr_grid']))} for parameter-efficient methods, seeds "
            f"{list(protocol['seeds'])}, learning curves at {list(protocol.get('lc_sizes', ()))} + the main size; "
            + "; ".join(
                f"{n}: {budgets[n]['n_train']} training structures, batch {budgets[n]['batch_size']}" for n in names
            ),
        }
        write_converged_report(state, meta, {n: keys for n in names}, path, len(protocol["seeds"]))

    unknown = [n for n in names if n not in budgets]
    if unknown:
        raise SystemExit(f"--datasets: unknown {unknown} (converged: {', '.join(budgets)})")
    tasks = []
    for name in names:  # the main comparison of every data set first, then the learning curves
        budget = budgets[name]
        if name == "ecemc":
            task = prepare_ecemc(args, budget, args.work_dir)
        elif name == "domain":
            task = prepare_domain(args, budget, args.work_dir)
        else:
            task = prepare_molecule(args, budget, args.work_dir, name)
        tasks.append(task)
        run_converged(task, router, methods, protocol, state, on_method=report)
        report()
    if not args.no_learning_curves:
        for task in tasks:
            run_learning_curves(task, router, state[task.name], protocol, on_method=report)
    report()
    log(f"report: {path} ({(time.perf_counter() - started) / 60:.1f} min this invocation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
