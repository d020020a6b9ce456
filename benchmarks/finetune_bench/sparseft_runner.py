"""sparseft's side of a run: the recipe (built as a dict, run by ``run.py _worker`` in a
subprocess), the worker command, and what its output directory holds (trainable and changed
weights, adapter bytes, sparseft's own epoch timing)."""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

from .config import HEAD_NAME, RUN_PY, HeadMethod, Method
from .data import Task
from .util import write_json

EPOCH_PATTERN = r"^epoch \d+/\d+ "  # sparseft's epoch log line (stdout of the worker)


DEFAULTS = "_recipe_defaults"  # a Method.train marker: keep only seed + the method's own keys


def sparseft_recipe(
    task: Task,
    method: Method,
    train_file: Path,
    e0s: dict,
    epochs: int,
    seed: int,
    out: Path,
    base_model: Path,
    n_layers: int,
    lr: float,
    patience: int | None = None,
) -> dict:
    from ase.data import chemical_symbols

    b = task.budget
    train = {
        "optimizer": "adam",
        "lr": lr,
        "weight_decay": 0.0,
        "scheduler": "constant",
        "epochs": epochs,
        "batch_size": b["batch_size"],
        "energy_weight": b["energy_weight"],
        "forces_weight": b["forces_weight"],
        "stress_weight": 0.0,
        "clip_grad": 10.0,
        "ema_decay": None,
        "patience": patience,
        "seed": seed,
    }
    overrides = dict(method.train)
    if overrides.pop(DEFAULTS, False):
        # "what a user gets": sparseft's own defaults for lr, schedule, epochs, batch, loss weights
        train = {"seed": seed}
    train.update(overrides)
    data = {
        "train": str(train_file),
        "valid": str(task.valid),
        "valid_fraction": 0.0,
        "energy_key": "REF_energy",
        "forces_key": "REF_forces",
        "E0s": {chemical_symbols[z]: v for z, v in sorted(e0s.items())},
    }
    data.update({k: json.loads(v) for k, v in getattr(method, "data", ())})
    return {
        "base": {"model": str(base_model), "dtype": task.dtype, "device": "cpu"},
        "data": data,
        "adapters": method.adapter_dicts(n_layers),
        "train": train,
        "output": {"directory": str(out)},
    }


def head_recipe(task: Task, method: HeadMethod, seed: int, out: Path) -> dict:
    """The magnetic-moment recipe (recipes/hco-magmom-head.yaml's settings): a collinear head
    ``spin`` on the base, the trunk as ``method`` says, xTB replay frames next to the moments."""
    b = task.budget
    train = [str(task.pool)] + ([str(task.extra["replay"])] if method.replay else [])
    settings = {
        "lr": b["lr"],
        "scheduler": b["scheduler"],
        "epochs": b["epochs"],
        "batch_size": b["batch_size"],
        "energy_weight": b["energy_weight"],
        "forces_weight": b["forces_weight"],
        "ema_decay": b["ema_decay"],
        "seed": seed,
    }
    settings.update(dict(method.train))
    return {
        "base": {"model": str(task.base_model), "dtype": task.dtype, "device": "cpu"},
        "data": {
            "train": train,
            "valid": str(task.valid),
            "test": str(task.test),
            "energy_key": "energy_xtb",
            "forces_key": "forces_xtb",
            "stress_key": None,
            "virials_key": None,
            "E0s": "foundation",
        },
        "adapters": method.adapter_dicts(b["l1"]),
        "heads": [
            {
                "name": HEAD_NAME,
                "kind": "magmom",
                "magmom_key": "REF_magmoms",
                "total_key": "REF_total_magmom",
                "constrain_total": True,
                "magmoms_weight": b["magmoms_weight"],
                "hidden": b["hidden"],
            }
        ],
        "train": settings,
        "output": {"directory": str(out)},
    }


def worker_command(run_dir: Path, recipe: dict, threads: int) -> list[str]:
    """Writes the worker's spec next to the run; the command that runs it."""
    spec_path = run_dir / "worker.json"
    write_json(spec_path, {"recipe": recipe, "threads": threads})
    return [sys.executable, str(RUN_PY), "_worker", str(spec_path)]


def read_outputs(out: Path) -> tuple[dict, Path]:
    """Result fields of a finished fine-tune in ``out``, and its merged model."""
    metrics = json.loads((out / "metrics.json").read_text())
    fields = {
        "trainable_parameters": metrics["trainable_parameters"],
        "adapter_bytes": dir_bytes(out / "adapter"),
        "adapter_tensor_bytes": _size(out / "adapter" / "adapter.safetensors"),
        "sparseft_changed_parameters": metrics["changed_parameters"],
        "best_epoch": metrics.get("best_epoch"),
    }
    with open(out / "history.csv", newline="") as fh:
        seconds = [float(row["seconds"]) for row in csv.DictReader(fh) if row.get("seconds")]
    fields["epoch_s_internal"] = statistics.median(seconds) if seconds else None  # sparseft's own timing
    return fields, out / "merged.model"


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def read_head_outputs(out: Path) -> tuple[dict, Path]:
    """Result fields of a finished fine-tune with the moment head (sparseft's own test / valid
    moment errors, and the head as it started: the per-element-mean baseline), and its merged
    trunk (``merged.model``: the foundation head, without the moment head)."""
    fields, model_path = read_outputs(out)
    metrics = json.loads((out / "metrics.json").read_text())
    fields["head_parameters"] = metrics["head_parameters"]
    fields["trunk_trainable_parameters"] = metrics["trainable_parameters"] - metrics["head_parameters"]
    moments = {}
    for name in ("test", "valid"):
        for source, label in (("splits", name), ("base_zero_shot", f"{name}_baseline")):
            m = metrics[source][name]
            moments[label] = {"mae": m[f"{HEAD_NAME}.magmoms_mae"], "rmse": m[f"{HEAD_NAME}.magmoms_rmse"]}
    fields["moments"] = moments
    return fields, model_path
