"""Every run of one data set, in order: the zero-shot base evaluation, the main comparison,
then learning curves for the best settings; or, with --report-only, the same state read
back from the cached results."""

from __future__ import annotations

import json

from .config import LC_FAMILIES, METHOD_BY_KEY, HeadMethod, Method
from .data import Task, train_file_for
from .evaluate import Evaluator, base_row
from .inputs import estimated_e0s
from .results import best_of
from .runs import Runner
from .util import spec_hash, write_json


def run_task(task: Task, runner: Runner, methods: list[Method], args, state: dict) -> dict:
    ev = Evaluator(task)
    main_n = task.budget["n_train"] or task.n_pool
    e0s_main = estimated_e0s(task, train_file_for(task, main_n))
    base_path = task.dir / f"base_eval_n{main_n}.json"
    bkey = spec_hash({"e0s": e0s_main, "meta": task.extra.get("meta", {}).get("key")})
    cached = json.loads(base_path.read_text()) if base_path.is_file() else {}
    if cached.get("key") != bkey:
        cached = {
            "key": bkey,
            **base_row(task, ev, e0s_main),
            "base_parameters": sum(p.numel() for p in ev.base.parameters()),
        }
        write_json(base_path, cached)
    if ev.subsets and set(cached.get("forget_subsets", {})) != set(ev.subsets):
        cached["forget_subsets"] = ev.forget_subsets(ev.base)
        write_json(base_path, cached)
    info_subsets = dict(ev.subsets)
    info = {
        "task": task,
        "main_n": main_n,
        "base": cached,
        "main": [],
        "lc": [],
        "e0s_main": e0s_main,
        "subsets": info_subsets,
    }
    state[task.name] = info
    for method in methods:
        info["main"].append(runner.run(task, ev, method, main_n, 0, main_n))
    if task.budget["lc_sizes"] and not args.no_learning_curves:
        chosen = [best_of(info["main"], f) for f in LC_FAMILIES]
        chosen = [METHOD_BY_KEY[r["method"]] for r in chosen if r is not None]
        info["lc_methods"] = [m.key for m in chosen]
        for method in chosen:
            for n in task.budget["lc_sizes"]:
                n = task.n_pool if n == "all" else n
                if n > task.n_pool or n == main_n:
                    continue
                for seed in task.budget["lc_seeds"].get(n, [0]):
                    info["lc"].append(runner.run(task, ev, method, n, seed, main_n))
            for seed in task.budget["lc_seeds"].get(main_n, [])[1:]:
                info["lc"].append(runner.run(task, ev, method, main_n, seed, main_n))
    return info


def load_cached(task: Task, methods: list[Method], budget: dict) -> dict:
    """The state of one data set from its cached results (--report-only; nothing is trained)."""
    info = {"task": task, "main_n": budget["n_train"] or task.n_pool, "main": [], "lc": []}
    for method in methods:
        for path in sorted((task.dir / "runs").glob(f"{method.key}_n*_s*/result.json")):
            r = json.loads(path.read_text())
            (info["main"] if r["n_train"] == info["main_n"] and r["seed"] == 0 else info["lc"]).append(r)
    base_path = task.dir / f"base_eval_n{info['main_n']}.json"
    info["base"] = json.loads(base_path.read_text())
    info["e0s_main"] = {int(z): v for z, v in info["main"][0]["E0s"].items()} if info["main"] else {}
    info["subsets"] = {
        k: "forgetting-set structures without " + k[len("forget_without_") :].replace("_", "/")
        for k in info["base"].get("forget_subsets", {})
    }
    info["lc_methods"] = (
        [r["method"] for r in (best_of(info["main"], f) for f in LC_FAMILIES) if r] if info["lc"] else []
    )
    return info


def run_heads_task(task: Task, runner: Runner, methods: list[HeadMethod], state: dict) -> dict:
    """The magnetic data set: the base's xTB errors on the forgetting set, then one run per method."""
    ev = Evaluator(task)
    base_path = task.dir / "base_eval.json"
    bkey = spec_hash({"meta": task.extra["meta"]["key"]})
    cached = json.loads(base_path.read_text()) if base_path.is_file() else {}
    if cached.get("key") != bkey:
        cached = {
            "key": bkey,
            "forget": ev.errors(ev.base, "forget"),
            "base_parameters": sum(p.numel() for p in ev.base.parameters()),
        }
        write_json(base_path, cached)
    info = {"kind": "heads", "task": task, "base": cached, "runs": []}
    state[task.name] = info
    for method in methods:
        info["runs"].append(runner.run_heads(task, ev, method))
    return info


def load_cached_heads(task: Task, methods: list[HeadMethod]) -> dict:
    """The magnetic data set's state from its cached results (--report-only)."""
    base_path = task.dir / "base_eval.json"
    if not base_path.is_file():
        return {"skipped": f"No cached runs in {task.dir} (run without --report-only first)."}
    runs = [
        json.loads(p.read_text()) for m in methods if (p := task.dir / "runs" / f"{m.key}_s0" / "result.json").is_file()
    ]
    return {"kind": "heads", "task": task, "base": json.loads(base_path.read_text()), "runs": runs}
