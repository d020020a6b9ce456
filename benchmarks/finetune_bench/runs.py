"""One training run, start to ``result.json``: the settings hash and cache, the tool's command
(sparseft worker or mace_run_train), the measured process, and the evaluation of its model."""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
import shutil

from . import mace_runner, sparseft_runner
from .config import SCRATCH_LR, HeadMethod, Method
from .data import Task, train_file_for
from .evaluate import Evaluator, load_any_model
from .inputs import epochs_for, estimated_e0s, make_scratch_model
from .process import child_env, epoch_seconds, run_process
from .util import log, now_iso, spec_hash, write_json


class Runner:
    def __init__(self, args, sparseft_path: str | None):
        self.args = args
        self.sparseft_path = sparseft_path
        self.env = child_env(args.threads, sparseft_path)
        self.session_runs = 0
        self.session_train_s = 0.0

    def run(
        self, task: Task, ev: Evaluator, method: Method, n: int, seed: int, main_n: int, protocol: dict | None = None
    ) -> dict:
        """One run; ``protocol`` (the converged protocol) sets ``lr``, ``epochs`` (the cap),
        ``patience`` and a per-seed training subset, and tags the run directory with the lr."""
        args = self.args
        protocol = protocol or {}
        lr_tag = "default" if protocol.get("lr") == "default" else f"{protocol.get('lr', 0):g}"
        run_id = f"{method.key}_n{n}_s{seed}" + (f"_lr{lr_tag}" if protocol else "")
        run_dir = task.dir / ("runs-converged" if protocol else "runs") / run_id
        result_path = run_dir / "result.json"
        train_file = train_file_for(task, n, seed if protocol else None)
        epochs = protocol.get("epochs") or epochs_for(task, n, main_n)
        lr = protocol.get("lr") or (SCRATCH_LR if method.scratch else task.budget["lr"])
        patience = protocol.get("patience")
        settings = {
            "method": dataclasses.asdict(method),
            "n": n,
            "seed": seed,
            "epochs": epochs,
            "lr": lr,
            "budget": task.budget,
            "base": str(task.base_model),
            "threads": args.threads,
            "sparseft": args.sparseft_source,
            "split_meta": task.extra.get("meta", {}).get("key"),
        }
        if protocol:
            settings["patience"] = patience
        key = spec_hash(settings)
        cached = self.cached(result_path, key)
        if cached is not None:
            if ev.subsets and set(cached.get("forget_subsets", {})) != set(ev.subsets):
                model_file = cached.get("model_file") or (
                    "sparseft/merged.model" if cached["tool"] == "sparseft" else "mace/mace.model"
                )
                cached["forget_subsets"] = ev.forget_subsets(load_any_model(run_dir / model_file))
                write_json(result_path, cached)  # evaluation added later; the training run is unchanged
            return cached
        if args.report_only:  # the converged protocol's report from whatever finished
            return {"run": run_id, "status": "not run", "method": method.key, "lr": lr, "seed": seed}
        fresh_dir(run_dir)
        e0s = estimated_e0s(task, train_file)
        n_layers = len(ev.base.interactions)
        base_model = make_scratch_model(task, seed) if method.scratch else task.base_model
        if method.tool == "mace":
            base_model = mace_runner.base_with_e0s(task, e0s, run_dir)
        result = {
            "run": run_id,
            "key": key,
            "dataset": task.name,
            "method": method.key,
            "label": method.label,
            "tool": method.tool,
            "family": method.family,
            "n_train": n,
            "seed": seed,
            "epochs": epochs,
            "batch_size": task.budget["batch_size"],
            "lr": lr,
            "E0s": {str(z): v for z, v in e0s.items()},
            "steps_per_epoch": math.ceil(n / task.budget["batch_size"]),
            "patience": patience,
            "train_file": str(train_file),
            "started": now_iso(),
        }
        if method.tool == "sparseft":
            out = run_dir / "sparseft"
            recipe = sparseft_runner.sparseft_recipe(
                task, method, train_file, e0s, epochs, seed, out, base_model, n_layers, lr, patience
            )
            cmd = sparseft_runner.worker_command(run_dir, recipe, args.threads)
            pattern = sparseft_runner.EPOCH_PATTERN
            result["recipe"] = recipe
        else:
            out = run_dir / "mace"
            out.mkdir()
            cmd = mace_runner.mace_command(
                args, task, method, train_file, e0s, epochs, seed, out, base_model, patience, lr
            )
            pattern = mace_runner.EPOCH_PATTERN
        result["command"] = shlex.join(cmd)
        log(f"{task.name}: {run_id} ({method.label}, n={n}, {epochs} epochs, seed {seed}) ...")
        proc = self.measure(cmd, run_dir, pattern, result)
        if proc["rc"] != 0:
            return self.failed(result, proc, run_dir, result_path)
        if method.tool == "sparseft":
            fields, model_path = sparseft_runner.read_outputs(out)
        else:
            fields, model_path, lora_match = mace_runner.read_outputs(run_dir, out)
        result.update(fields)
        model = load_any_model(model_path)
        result["model_file"] = str(model_path.relative_to(run_dir))
        result["model_bytes"] = model_path.stat().st_size
        if method.tool == "mace":
            result["trainable_parameters"] = mace_runner.trainable(model, method, lora_match)
        result.update(ev.changed(model))
        result["base_parameters"] = sum(p.numel() for p in ev.base.parameters())
        result["base_model_bytes"] = task.base_model.stat().st_size
        result["base_weight_bytes"] = sum(p.numel() * p.element_size() for p in ev.base.parameters())
        result["test"] = ev.errors(model, "test")
        result["valid"] = ev.errors(model, "valid")
        result["forget"] = ev.errors(model, "forget", ev.base_e0s)
        result["forget_subsets"] = ev.forget_subsets(model)
        for name in ev.extra_tests:
            result[name] = ev.errors(model, name)
        result["epochs_run"] = len(result.get("epoch_stamps_s") or [])
        finish(result, result_path)
        log(
            f"  done in {proc['wall_s']:.0f}s: test F MAE {1000 * result['test']['forces_mae']:.1f} meV/Å, "
            f"E MAE {1000 * result['test']['energy_mae']:.2f} meV/atom; forget F {1000 * result['forget']['forces_mae']:.1f}; "
            f"changed {result['changed_parameters']}/{result['base_parameters']}; "
            f"epoch {result['epoch_s'] or float('nan'):.2f}s; RSS {proc['peak_rss_mb']:.0f} MB"
        )
        return result

    def run_heads(self, task: Task, ev: Evaluator, method: HeadMethod, seed: int = 0) -> dict:
        """One magnetic-moment run (sparseft only): moment errors from sparseft's metrics, the
        foundation head's forgetting and the trunk's changed weights from ``merged.model``."""
        args = self.args
        run_id = f"{method.key}_s{seed}"
        run_dir = task.dir / "runs" / run_id
        result_path = run_dir / "result.json"
        settings = {
            "method": dataclasses.asdict(method),
            "seed": seed,
            "budget": task.budget,
            "base": str(task.base_model),
            "threads": args.threads,
            "sparseft": args.sparseft_source,
            "split_meta": task.extra["meta"]["key"],
        }
        key = spec_hash(settings)
        cached = self.cached(result_path, key)
        if cached is not None:
            return cached
        fresh_dir(run_dir)
        meta, b = task.extra["meta"], task.budget
        n_frames = meta["n_train"] + (meta["n_replay"] if method.replay else 0)
        result = {
            "run": run_id,
            "key": key,
            "dataset": task.name,
            "method": method.key,
            "label": method.label,
            "tool": "sparseft",
            "family": method.family,
            "replay": method.replay,
            "n_train": meta["n_train"],
            "n_replay": meta["n_replay"] if method.replay else 0,
            "seed": seed,
            "epochs": b["epochs"],
            "batch_size": b["batch_size"],
            "lr": b["lr"],
            "steps_per_epoch": math.ceil(n_frames / b["batch_size"]),
            "started": now_iso(),
        }
        out = run_dir / "sparseft"
        result["recipe"] = sparseft_runner.head_recipe(task, method, seed, out)
        cmd = sparseft_runner.worker_command(run_dir, result["recipe"], args.threads)
        result["command"] = shlex.join(cmd)
        log(f"{task.name}: {run_id} ({method.label}, {n_frames} frames, {b['epochs']} epochs, seed {seed}) ...")
        proc = self.measure(cmd, run_dir, sparseft_runner.EPOCH_PATTERN, result)
        if proc["rc"] != 0:
            return self.failed(result, proc, run_dir, result_path)
        fields, model_path = sparseft_runner.read_head_outputs(out)
        result.update(fields)
        model = load_any_model(model_path)
        result["model_file"] = str(model_path.relative_to(run_dir))
        result.update(ev.changed(model))
        result["base_parameters"] = sum(p.numel() for p in ev.base.parameters())
        result["base_model_bytes"] = task.base_model.stat().st_size
        result["forget"] = ev.errors(model, "forget", ev.base_e0s)
        finish(result, result_path)
        log(
            f"  done in {proc['wall_s']:.0f}s: test moment MAE {result['moments']['test']['mae']:.4f} μB "
            f"(per-element mean {result['moments']['test_baseline']['mae']:.4f}); xTB forget F "
            f"{1000 * result['forget']['forces_mae']:.1f} meV/Å; changed {result['changed_parameters']}/"
            f"{result['base_parameters']}; epoch CPU {result['epoch_cpu_s'] or float('nan'):.2f}s"
        )
        return result

    def cached(self, result_path, key: str) -> dict | None:
        """The finished result of a run with these settings, unless ``--rerun``."""
        if result_path.is_file() and not self.args.rerun:
            cached = json.loads(result_path.read_text())
            if cached.get("key") == key and cached.get("status") == "ok":
                return cached
        return None

    def measure(self, cmd: list[str], run_dir, pattern: str, result: dict) -> dict:
        """Run the training process; its measurements go into ``result``."""
        proc = run_process(
            cmd,
            cwd=run_dir,
            env=self.env,
            log_path=run_dir / "train.log",
            epoch_pattern=pattern,
            timeout=self.args.timeout,
        )
        self.session_runs += 1
        self.session_train_s += proc["wall_s"]
        result.update({k: v for k, v in proc.items() if k != "tail"})
        result["epoch_s"] = epoch_seconds(proc["epoch_stamps_s"])
        result["epoch_cpu_s"] = epoch_seconds(proc["epoch_cpu_stamps_s"])
        return proc

    @staticmethod
    def failed(result: dict, proc: dict, run_dir, result_path) -> dict:
        result.update(status="failed", error=proc["tail"])
        write_json(result_path, result)
        log(f"  FAILED (rc {proc['rc']}{', timed out' if proc['timed_out'] else ''}); see {run_dir / 'train.log'}")
        return result


def fresh_dir(run_dir) -> None:
    """An empty run directory (a failed or outdated run's files are removed)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)


def finish(result: dict, result_path) -> None:
    result["status"] = "ok"
    result["finished"] = now_iso()
    write_json(result_path, result)
