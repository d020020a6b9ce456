"""Checkpoints, crash-safe: a kill at any moment leaves a complete checkpoint to resume from.

Layout under the output directory::

    checkpoint/LATEST                  name of the newest complete checkpoint (replaced atomically)
    checkpoint/step-000000120-0/       state.json (state, sha256 of the tensors) + tensors.safetensors
    checkpoint/.tmp-*/                 a checkpoint being written

A new checkpoint is written into a temporary folder, renamed to its own numbered name, and
only then does ``LATEST`` point to it (one atomic rename of a small file); older checkpoints
beyond ``train.keep_checkpoints`` (default 1: the newest alone; null: all) are deleted last.
Resuming takes the checkpoint ``LATEST`` names when it is complete (its ``state.json`` parses
and the tensors match their recorded sha256), else the newest complete one found, and deletes
temporary and damaged folders and any newer than the one it resumes. Holds the trainable
values, the fixed supports of prunable parts (masks, or the positions a compacted part holds),
optimiser moments, EMA shadow, best values, E0 buffers and the :class:`TrainState`; no pickle.
A run resumed from it continues exactly where the checkpoint was taken (data order is a pure
function of seed and epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import load_file, save_file

from .._compat import torch
from ..files import follow_umask, os_error, sha256_file
from .optim import EMA
from .state import TrainState
from .trainer import Trainer

CHECKPOINT_DIR = "checkpoint"
POINTER = "LATEST"
TENSORS, STATE = "tensors.safetensors", "state.json"


def _tensors(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Everything a resumed trainer needs, keyed ``param/i``, ``optim/i/key``, ``mask/j``, ..."""
    tensors: dict[str, torch.Tensor] = {}
    for i, p in enumerate(trainer.params):
        tensors[f"param/{i}"] = p.detach().cpu().contiguous()
        for key, value in trainer.optimizer.state.get(p, {}).items():
            if torch.is_tensor(value):
                tensors[f"optim/{i}/{key}"] = value.detach().cpu().reshape(value.shape).contiguous()
    for j, part in enumerate(trainer.adapted.prunable_parts()):
        if part.mask is not None:
            tensors[f"mask/{j}"] = part.mask.detach().cpu().contiguous()
        if getattr(part, "support", None) is not None:  # compacted: the parameter holds these entries
            tensors[f"support/{j}"] = part.support.detach().cpu().contiguous()
    if trainer.ema:
        for i, s in enumerate(trainer.ema.shadow):
            tensors[f"ema/{i}"] = s.detach().cpu().contiguous()
    if trainer.best_params is not None:
        for i, b in enumerate(trainer.best_params):
            tensors[f"best/{i}"] = b.detach().cpu().contiguous()
    for name, value in trainer.adapted.changed_buffers().items():
        tensors[f"buffer/{name}"] = value.cpu().contiguous()
    return tensors


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(output: Path, trainer: Trainer, state: TrainState) -> Path:
    """Write a new checkpoint under ``output/checkpoint`` and point ``LATEST`` to it; returns its folder."""
    root = Path(output) / CHECKPOINT_DIR
    tensors = _tensors(trainer)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        try:
            save_file(tensors, str(tmp / TENSORS))
            meta = {
                "state": state.to_dict(),
                "num_params": len(trainer.params),
                "tensors_sha256": sha256_file(tmp / TENSORS),
            }
            (tmp / STATE).write_text(json.dumps(meta))
            follow_umask(tmp)
            for name in (TENSORS, STATE):
                _fsync(tmp / name)
            final = _new_name(root, state.step)
            os.rename(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        pointer_tmp = root / f".{POINTER}.tmp"
        pointer_tmp.write_text(final.name + "\n")
        _fsync(pointer_tmp)
        os.replace(pointer_tmp, root / POINTER)
        _fsync(root)
    except Exception as exc:
        raise os_error(exc, root) from exc
    remove_stale(output, keep=final, count=getattr(trainer.config, "keep_checkpoints", 1))
    return final


def _new_name(root: Path, step: int) -> Path:
    k = 0
    while (root / f"step-{step:09d}-{k}").exists():
        k += 1
    return root / f"step-{step:09d}-{k}"


def _complete(folder: Path) -> dict | None:
    """The parsed ``state.json`` of a complete checkpoint folder, else None."""
    try:
        meta = json.loads((folder / STATE).read_text())
        if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
            return None
        if sha256_file(folder / TENSORS) != meta.get("tensors_sha256"):
            return None
        return meta
    except (OSError, ValueError):
        return None


def find_checkpoint(output: Path) -> Path | None:
    """The checkpoint to resume from: the one ``LATEST`` names when complete, else the newest
    complete one (by step), else None."""
    root = Path(output) / CHECKPOINT_DIR
    if not root.is_dir():
        return None
    try:
        named = root / (root / POINTER).read_text().strip()
        if named.parent == root and named.name.startswith("step-") and _complete(named):
            return named
    except (OSError, ValueError):
        pass
    found = [
        (meta["state"].get("step", 0), meta["state"].get("epoch", 0), folder.name, folder)
        for folder in root.glob("step-*")
        if (meta := _complete(folder)) is not None
    ]
    return max(found)[-1] if found else None


def remove_stale(output: Path, keep: Path | None = None, count: int | None = 1) -> None:
    """Delete temporary and damaged checkpoint folders, those newer than ``keep`` (default: the
    one :func:`find_checkpoint` picks) and all but the ``count`` newest up to ``keep`` (None: none)."""
    root = Path(output) / CHECKPOINT_DIR
    if not root.is_dir():
        return
    verify = keep is None  # resuming: older folders are checked (a fresh save just wrote its own)
    keep = keep or find_checkpoint(output)
    kept = {keep} | set(_older(root, keep, count, verify)) if keep is not None else set()
    for entry in root.iterdir():
        if entry.name == POINTER or entry in kept:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    if keep is not None and not (root / POINTER).is_file():
        (root / POINTER).write_text(keep.name + "\n")


def _older(root: Path, newest: Path, count: int | None, verify: bool) -> list[Path]:
    """The ``count - 1`` newest checkpoint folders older than ``newest`` (all with ``count`` None)."""
    limit = _order(newest)
    if count == 1 or limit is None:
        return []
    ordered = [(order, p) for p in root.glob("step-*") if (order := _order(p)) is not None and p.is_dir()]
    older = [p for order, p in sorted(ordered) if order < limit and (not verify or _complete(p))]
    return older if count is None else older[-(count - 1) :]


def _order(folder: Path) -> tuple[int, int] | None:
    """``step-000000120-1`` -> ``(120, 1)``; None for other names."""
    _, step, k = (folder.name.split("-") + ["", ""])[:3]
    return (int(step), int(k)) if step.isdigit() and k.isdigit() else None


def has_checkpoint(output: Path) -> bool:
    return find_checkpoint(output) is not None


@torch.no_grad()
def load_checkpoint(output: Path, trainer: Trainer) -> TrainState:
    """Restore a trainer (built from the same recipe) and return the saved state."""
    d = find_checkpoint(output)
    if d is None:
        raise ValueError(f"{Path(output) / CHECKPOINT_DIR}: no complete checkpoint to resume from")
    meta = json.loads((d / STATE).read_text())
    tensors = load_file(str(d / TENSORS))
    supports = {int(k.split("/")[1]): v for k, v in tensors.items() if k.startswith("support/")}
    if supports:  # compacted parts first: their parameters take the checkpoint's shapes
        trainer.compact(supports)
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
        if state and "exp_avg_sq" in state and "max_exp_avg_sq" not in state and _amsgrad(trainer.optimizer, p):
            state["max_exp_avg_sq"] = state["exp_avg_sq"].clone()  # written by plain Adam (before train.amsgrad)
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
    if state.support_fixed and trainer.compact_support:  # a checkpoint with fixed masks, not compacted
        trainer.compact()
    return state


def _amsgrad(optimizer, p) -> bool:
    return any(g.get("amsgrad") and any(q is p for q in g["params"]) for g in optimizer.param_groups)
