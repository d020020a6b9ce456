"""mace-torch's side of a run: the ``mace_run_train`` command (its own CLI, the same settings
as sparseft's recipe), the foundation file it is given, and what its log and model say
(trainable parameters)."""

from __future__ import annotations

import re
from pathlib import Path

from .config import Method
from .data import Task

EPOCH_PATTERN = r"INFO: Epoch \d+: "  # mace_run_train's epoch log line


def base_with_e0s(task: Task, e0s: dict, run_dir: Path) -> Path:
    """A copy of the base model file whose E0 buffer holds ``e0s`` (weights untouched), for
    mace_run_train: mace 0.3.16's load_foundations_elements copies every foundation buffer of
    matching shape into the new model after building it with ``--E0s``, so when the element
    tables match (``--foundation_model_elements True``, or a foundation saved by the same mace
    version) the foundation's E0s silently replace ``--E0s``. Passing both keeps them equal."""
    import torch

    from sparseft.e0s import set_e0s

    model = torch.load(task.base_model, map_location="cpu", weights_only=False)
    set_e0s(model, e0s)
    path = run_dir / "foundation_with_E0s.model"
    torch.save(model, path)
    return path


def mace_command(
    args,
    task: Task,
    method: Method,
    train_file: Path,
    e0s: dict,
    epochs: int,
    seed: int,
    work: Path,
    base_model: Path,
    patience: int | None = None,
    lr: float | None = None,
) -> list[str]:
    b = task.budget
    e0_text = "{" + ", ".join(f"{z}: {v!r}" for z, v in sorted(e0s.items())) + "}"
    return [
        args.mace_train,
        "--name",
        "mace",
        "--seed",
        str(seed),
        "--work_dir",
        str(work),
        "--train_file",
        str(train_file),
        "--valid_file",
        str(task.valid),
        "--energy_key",
        "REF_energy",
        "--forces_key",
        "REF_forces",
        "--E0s",
        e0_text,
        "--foundation_model",
        str(base_model),
        "--multiheads_finetuning",
        "False",
        "--foundation_model_elements",
        "True",
        "--loss",
        "weighted",
        "--energy_weight",
        str(b["energy_weight"]),
        "--forces_weight",
        str(b["forces_weight"]),
        "--batch_size",
        str(b["batch_size"]),
        "--valid_batch_size",
        str(b["batch_size"]),
        "--lr",
        str(lr if lr is not None else b["lr"]),
        "--weight_decay",
        "0.0",
        "--clip_grad",
        "10.0",
        "--max_num_epochs",
        str(epochs),
        "--patience",
        str(
            patience + 1 if patience is not None else epochs + 1
        ),  # mace stops after P bad epochs, sparseft after P+1 "--eval_interval", "1",
        "--error_table",
        "PerAtomMAE",
        "--default_dtype",
        task.dtype,
        "--device",
        "cpu",
        "--num_workers",
        "0",
        "--pin_memory",
        "False",
        "--save_cpu",
        "--plot",
        "False",
        *method.mace_args,
    ]


def read_outputs(run_dir: Path, out: Path) -> tuple[dict, Path, tuple]:
    """Result fields of a finished run, its model, and the trainable counts its log reports
    with --lora (for :func:`trainable`)."""
    model_path = out / "mace.model"
    text = (run_dir / "train.log").read_text()
    lora_match = (
        re.search(r"Original model has (\d+) trainable parameters", text),
        re.search(r"Model with LoRA has (\d+) trainable parameters", text),
    )
    return {"adapter_bytes": model_path.stat().st_size}, model_path, lora_match  # mace writes whole models only


def trainable(model, method: Method, lora_match) -> int:
    """What mace_run_train's optimiser updates: its parameter groups (embedding, interactions,
    products, readouts; see mace.tools.scripts_utils.get_params_options) minus --freeze; with
    --lora the LoRA matrices only (its log's "Model with LoRA has N" minus "Original model has
    M": both count every parameter, the base ones being frozen)."""
    before, after = lora_match
    if before is not None and after is not None:
        return int(after.group(1)) - int(before.group(1))
    args = dict(zip(method.mace_args[::2], method.mace_args[1::2]))
    freeze = int(args.get("--freeze", 0) or 0)
    groups = {"node_embedding": 1, "interactions": 5, "products": 6, "readouts": 7}
    total = 0
    for name, p in model.named_parameters():
        top = name.split(".")[0]
        if top not in groups or freeze >= groups[top]:
            continue
        total += p.numel()
    return total
