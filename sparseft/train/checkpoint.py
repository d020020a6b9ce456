"""Checkpoints: ``checkpoint/state.json`` + ``checkpoint/tensors.safetensors``, written atomically.

Holds the trainable values, the fixed supports (masks) of prunable parts, optimiser moments, EMA shadow, best values,
E0 buffers and the :class:`TrainState`; no pickle. A run resumed from it continues exactly
where the checkpoint was taken (data order is a pure function of seed and epoch).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from .._compat import torch
from ..files import write_directory_atomically
from .trainer import EMA, Trainer, TrainState

CHECKPOINT_DIR = "checkpoint"


def save_checkpoint(output: Path, trainer: Trainer, state: TrainState) -> Path:
    """Write the checkpoint directory under ``output`` (replacing the previous one atomically)."""
    tensors: dict[str, torch.Tensor] = {}
    for i, p in enumerate(trainer.params):
        tensors[f"param/{i}"] = p.detach().cpu().contiguous()
        for key, value in trainer.optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                tensors[f"optim/{i}/{key}"] = value.detach().cpu().reshape(value.shape).contiguous()
    for j, part in enumerate(trainer.adapted.prunable_parts()):
        if part.mask is not None:
            tensors[f"mask/{j}"] = part.mask.detach().cpu().contiguous()
    if trainer.ema:
        for i, s in enumerate(trainer.ema.shadow):
            tensors[f"ema/{i}"] = s.detach().cpu().contiguous()
    if trainer.best_params is not None:
        for i, b in enumerate(trainer.best_params):
            tensors[f"best/{i}"] = b.detach().cpu().contiguous()
    for name, value in trainer.adapted.changed_buffers().items():
        tensors[f"buffer/{name}"] = value.cpu().contiguous()
    meta = {"state": state.to_dict(), "num_params": len(trainer.params)}

    def write(tmp: Path):
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta))

    return write_directory_atomically(Path(output) / CHECKPOINT_DIR, write, overwrite=True)


def has_checkpoint(output: Path) -> bool:
    d = Path(output) / CHECKPOINT_DIR
    return (d / "state.json").is_file() and (d / "tensors.safetensors").is_file()


@torch.no_grad()
def load_checkpoint(output: Path, trainer: Trainer) -> TrainState:
    """Restore a trainer (built from the same recipe) and return the saved state."""
    d = Path(output) / CHECKPOINT_DIR
    meta = json.loads((d / "state.json").read_text())
    tensors = load_file(str(d / "tensors.safetensors"))
    if meta["num_params"] != len(trainer.params):
        raise ValueError(
            f"{d}: checkpoint has {meta['num_params']} parameter tensors, the recipe builds "
            f"{len(trainer.params)}; was the recipe changed since the run started?"
        )
    for i, p in enumerate(trainer.params):
        saved = tensors[f"param/{i}"]
        if saved.shape != p.shape:
            raise ValueError(
                f"{d}: parameter {i} has shape {tuple(saved.shape)}, expected {tuple(p.shape)}; "
                "was the recipe changed since the run started?"
            )
        p.copy_(saved.to(p))
        state = {k.split("/", 2)[2]: v.to(p.device) for k, v in tensors.items() if k.startswith(f"optim/{i}/")}
        if state:
            trainer.optimizer.state[p] = state
    for j, part in enumerate(trainer.adapted.prunable_parts()):
        if f"mask/{j}" in tensors:
            part.set_mask(tensors[f"mask/{j}"].bool().to(part.delta.device))
    if trainer.ema:
        trainer.ema = EMA(trainer.params, trainer.config.ema_decay)
        for i, s in enumerate(trainer.ema.shadow):
            s.copy_(tensors[f"ema/{i}"].to(s))
    if "best/0" in tensors:
        trainer.best_params = [tensors[f"best/{i}"].to(p) for i, p in enumerate(trainer.params)]
    for key, value in tensors.items():
        if key.startswith("buffer/"):
            trainer.adapted.set_buffer(key[len("buffer/") :], value)
    state = TrainState.from_dict(meta["state"])
    state.interrupted = False
    return state
