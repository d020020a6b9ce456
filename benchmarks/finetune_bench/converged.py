"""The converged protocol (``run.py --protocol converged``): every run trains to early stopping.

Rule for every sparseft method: validate every epoch, stop after ``patience + 1`` epochs in a
row without a lower validation loss (``train.patience = P``) or at the epoch cap, and keep the
best-validation weights. ``mace_run_train`` gets ``--patience P+1`` (the same count), but
mace-torch 0.3.16 never acts on it in a single process (the stop flag it sets exists only under
torch.distributed; it logs "Stopping optimization" and trains on), so every mace run trains to
the cap and keeps its best-validation checkpoint. The ``@cap`` rows (sparseft full and LoRA
without early stopping, at their searched lr) are the like-for-like comparison with mace. Sparse runs count only epochs that meet the
target density (sparseft's rule). The lr of each method is chosen on the validation set from
``lr_grid`` (full fine-tuning) or ``peft_lr_grid`` (every parameter-efficient method: fewer
weights move, so their usual lr is higher, as for LoRA in HF PEFT) with seed 0 (lowest ``forces_weight x force MAE + energy_weight x energy MAE``
on valid, as the training loss weighs them); seeds 1 and 2 then use it. Seeds differ in the
training subset (the pool shuffled per seed) and in the initialisation / data order.

Runs are cached under ``<work>/<dataset>/runs-converged/<method>_n<N>_s<seed>_lr<lr>/``; an
interrupted invocation resumes where it stopped.
"""

from __future__ import annotations

import json
import statistics

from .config import METHOD_BY_KEY, Method
from .util import log

PROTOCOL = {
    "max_epochs": 40,
    "patience": 4,
    "lr_grid": (1e-3, 3e-3, 1e-2),
    "peft_lr_grid": (3e-3, 1e-2, 3e-2),
    "seeds": (0, 1, 2),
    "lc_sizes": (10, 100),  # plus the main size; for LC_METHODS on LC_DATASETS
}
EPOCH_CAP = {"ecemc": 30}  # 160-atom liquid boxes: the one data set whose runs cost 3x the others
LC_DATASETS = ("aspirin", "acac")  # learning curves where a run costs ~40 s of CPU
LC_METHODS = ("full", "lora-4", "sparse-two_phase-3")
FULL_FAMILIES = ("full", "mace-full", "scratch")
QUICK_PROTOCOL = {"max_epochs": 3, "patience": 1, "lr_grid": (2e-3,), "seeds": (0, 1), "lc_sizes": ()}


# Per data set: the main training-set size, split sizes, batch size, loss weights.
def _budget(**sizes) -> dict:
    """One data set's budget: the shared loss weights, lr and caps, plus its own sizes."""
    return dict(
        n_forget=100,
        lr=2e-3,
        energy_weight=100.0,
        forces_weight=10.0,
        lc_sizes=[],
        lc_seeds={},
        lc_min_steps=0,
        epochs=40,
        **sizes,
    )


BUDGETS = {
    "ecemc": _budget(n_train=10, n_valid=5, n_test=40, batch_size=2),
    "domain": _budget(n_train=30, n_valid=None, n_test=None, batch_size=4),
    "aspirin": _budget(n_train=30, n_pool=100, n_valid=30, n_test=100, batch_size=4),
    "acac": _budget(n_train=30, n_pool=100, n_valid=30, n_test=100, batch_size=4),
}
QUICK_BUDGETS = {
    name: {
        **b,
        "n_train": 6,
        "n_valid": 4 if b["n_valid"] else None,
        "n_test": 6 if b["n_test"] else None,
        "n_forget": 10,
        **({"n_pool": 20} if "n_pool" in b else {}),
    }
    for name, b in BUDGETS.items()
}

SPARSE_MODES = ("two_phase", "gradual", "fisher", "str_scheduled")  # "str" in results before 0.x
DENSITIES = (0.005, 0.01, 0.03)
REPLAY = {"source": "generate", "n": 30, "weight": 1.0, "selection": "random"}  # pseudo-label replay
# the embedded foundation's shipped set (domain only): its own chemistry, labelled by the base
REPLAY_SHIPPED = {"source": "embedded:foundation_replay.xyz", "labels": "base", "n": 30, "weight": 1.0}


def sparse_method(mode: str, density: float) -> Method:
    pct = f"{100 * density:g}"
    adapter = {"method": "sparse", "mode": mode, "l1": 0.1}
    train = (("target_density", density), ("retrain_fraction", 0.3)) + (
        (("l1_schedule", "warmup"),) if mode == "two_phase" else ()
    )
    return Method(
        f"sparse-{mode}-{pct}",
        f"sparse {mode} {pct}%",
        "sparseft",
        "sparse",
        adapters=(json.dumps(adapter),),
        train=train,
    )


def defaults_method(density: float) -> Method:
    """``method: sparse`` + ``train.target_density``, nothing else: sparseft's own defaults for
    everything a user would not set (lr, schedule, epochs, batch size, loss weights, l1)."""
    from .sparseft_runner import DEFAULTS

    pct = f"{100 * density:g}"
    return Method(
        f"sparse-defaults-{pct}",
        f"sparse {pct}%, recipe defaults",
        "sparseft",
        "sparse",
        adapters=(json.dumps({"method": "sparse"}),),
        train=((DEFAULTS, True), ("target_density", density)),
    )


def to_cap(method: Method) -> Method:
    """``method`` without early stopping: trained to the epoch cap, best-validation weights kept,
    which is what mace_run_train 0.3.16 does in one process (its patience only logs: the stop
    flag exists only under torch.distributed), so the fair twin of the ``mace-*`` rows."""
    from dataclasses import replace

    return replace(
        method,
        key=method.key + "@cap",
        label=method.label + " (to the epoch cap)",
        train=method.train + (("patience", None),),
    )


def with_replay(method: Method, shipped: bool = False, weight: float = 1.0) -> Method:
    from dataclasses import replace

    config = {**(REPLAY_SHIPPED if shipped else REPLAY), "weight": weight}
    tag = ("+replay-shipped" if shipped else "+replay") + ("" if weight == 1.0 else f"-w{weight:g}")
    return replace(
        method,
        key=method.key + tag,
        label=method.label
        + (" + replay of the shipped set" if shipped else " + pseudo-label replay")
        + ("" if weight == 1.0 else f" (weight {weight:g})"),
        data=(("replay", json.dumps(config)),),
    )


CONVERGED_METHODS = {
    m.key: m
    for m in [
        METHOD_BY_KEY["full"],
        METHOD_BY_KEY["mace-full"],
        METHOD_BY_KEY["lora-4"],
        METHOD_BY_KEY["mace-lora-4"],
        METHOD_BY_KEY["freeze-readout"],
        *[sparse_method(mode, d) for mode in SPARSE_MODES for d in DENSITIES],
        with_replay(METHOD_BY_KEY["full"]),
        *[with_replay(sparse_method(mode, 0.03)) for mode in SPARSE_MODES],
        defaults_method(0.03),
        to_cap(METHOD_BY_KEY["full"]),
        to_cap(METHOD_BY_KEY["lora-4"]),
        with_replay(METHOD_BY_KEY["full"], shipped=True),
        with_replay(sparse_method("two_phase", 0.03), shipped=True),
        with_replay(sparse_method("two_phase", 0.03), shipped=True, weight=0.2),
    ]
}


def lr_group(method: Method) -> str:
    """The method whose lr search this one reuses: sparse densities share the 3 % search of their
    mode, replay variants the search of the method without replay."""
    key = method.key.split("+")[0].split("@")[0]
    if key.startswith("sparse-"):
        key = key.rsplit("-", 1)[0] + "-3"
    return key


def lr_grid(method: Method, protocol: dict) -> tuple:
    """The stated lr grid of ``method``: full fine-tuning's, or the parameter-efficient one."""
    if method.family in FULL_FAMILIES:
        return protocol["lr_grid"]
    return protocol.get("peft_lr_grid", protocol["lr_grid"])


def valid_score(result: dict, budget: dict) -> float:
    v = result["valid"]
    return budget["forces_weight"] * v["forces_mae"] + budget["energy_weight"] * v["energy_mae"]


def run_converged(task, runner, methods: list[Method], protocol: dict, state: dict, on_method=None) -> dict:
    """The main comparison (lr search on seed 0, then every seed) for one data set."""
    from .data import train_file_for
    from .evaluate import Evaluator, base_row
    from .inputs import estimated_e0s
    from .util import write_json

    ev = Evaluator(task)
    n = task.budget["n_train"]
    base_path = task.dir / "base_eval_converged.json"
    if not base_path.is_file():
        row = base_row(task, ev, estimated_e0s(task, train_file_for(task, n, 0)))
        row.update(
            {name: ev.errors(ev.base, name, estimated_e0s(task, train_file_for(task, n, 0))) for name in ev.extra_tests}
        )
        write_json(base_path, row)
    info = {"task": task, "base": json.loads(base_path.read_text()), "runs": {}, "lr": {}, "protocol": protocol}
    state[task.name] = info
    chosen_lr: dict[str, float] = {}
    for method in methods:
        group = lr_group(method)
        spec = _spec(task, protocol)
        if method.key.startswith("sparse-defaults-"):  # no search: the recipe's defaults decide
            info["runs"][method.key] = [
                runner.run(task, ev, method, n, seed, n, {**spec, "lr": "default"}) for seed in protocol["seeds"]
            ]
            continue
        if group not in chosen_lr:
            search_method = CONVERGED_METHODS.get(group, method)
            grid = lr_grid(search_method, protocol)
            trials = [runner.run(task, ev, search_method, n, 0, n, {**spec, "lr": lr}) for lr in grid]
            ok = [(valid_score(r, task.budget), r["lr"]) for r in trials if r.get("status") == "ok"]
            chosen_lr[group] = min(ok)[1] if ok else grid[0]
            info["lr"][group] = {
                "grid": list(grid),
                "chosen": chosen_lr[group],
                "scores": {f"{lr:g}": s for s, lr in ok},
            }
            log(f"{task.name}: lr for {group}: {chosen_lr[group]:g} (valid scores {info['lr'][group]['scores']})")
        lr = chosen_lr[group]
        info["runs"][method.key] = [
            runner.run(task, ev, method, n, seed, n, {**spec, "lr": lr}) for seed in protocol["seeds"]
        ]
        if on_method:
            on_method()  # the report after every method: a long run shows its progress
    return info


def _spec(task, protocol: dict) -> dict:
    return {"epochs": EPOCH_CAP.get(task.name, protocol["max_epochs"]), "patience": protocol["patience"]}


def run_learning_curves(task, runner, info: dict, protocol: dict, on_method=None) -> None:
    """Learning curves for ``LC_METHODS`` at ``protocol['lc_sizes']`` (plus the main size), every
    seed, each method at the lr its main-size search chose (no new search per size)."""
    from .evaluate import Evaluator

    if task.name not in LC_DATASETS or not protocol.get("lc_sizes"):
        return
    ev = Evaluator(task)
    n_main = task.budget["n_train"]
    info.setdefault("lc", {})
    for key in LC_METHODS:
        if key not in info["runs"] or lr_group(CONVERGED_METHODS[key]) not in info["lr"]:
            continue
        lr = info["lr"][lr_group(CONVERGED_METHODS[key])]["chosen"]
        curve = {n_main: info["runs"][key]}
        for n in protocol["lc_sizes"]:
            if n != n_main:
                curve[n] = [
                    runner.run(task, ev, CONVERGED_METHODS[key], n, seed, n_main, {**_spec(task, protocol), "lr": lr})
                    for seed in protocol["seeds"]
                ]
            info["lc"][key] = dict(sorted(curve.items()))
            if on_method:
                on_method()


def summarize(runs: list[dict], split: str, metric: str) -> tuple[float, float, int] | None:
    """Mean, sample standard deviation (0 for one seed) and count over the finished seeds."""
    values = [r[split][metric] for r in runs if r.get("status") == "ok" and split in r]
    if not values:
        return None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def compare(a, b) -> str:
    """``a`` vs ``b`` (mean, spread, n): ratio, and a tie when the difference is within the larger spread."""
    if a is None or b is None:
        return "-"
    ratio = a[0] / b[0]
    tie = abs(a[0] - b[0]) <= max(a[1], b[1])
    return f"{ratio:.2f}" + (" (tie)" if tie else "")
