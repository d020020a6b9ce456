"""What a training run starts from: the E0s both tools get, the epochs for a training-set
size, and the re-initialised model for training from scratch."""

from __future__ import annotations

import math
from pathlib import Path

from .data import Task

_E0_CACHE: dict = {}  # (base file, training file) -> E0s


def estimated_e0s(task: Task, train_file: Path) -> dict[int, float]:
    """The base's E0s corrected by least squares on the training file (sparseft's ``estimated``)."""
    key = (str(task.base_model), str(train_file))
    if key not in _E0_CACHE:
        _E0_CACHE[key] = _estimated_e0s(task, train_file)
    return dict(_E0_CACHE[key])


def _estimated_e0s(task: Task, train_file: Path) -> dict[int, float]:
    import sparseft
    from sparseft.data import Keys, attach_labels, read_frames
    from sparseft.e0s import resolve_e0s

    base = sparseft.load_model(task.base_model)
    frames = attach_labels(read_frames(train_file), Keys())
    return resolve_e0s("estimated", base, frames, Keys())


def epochs_for(task: Task, n: int, main_n: int) -> int:
    b = task.budget
    if n == main_n or not b.get("lc_min_steps"):
        return b["epochs"]
    steps = math.ceil(n / b["batch_size"])
    return max(b["epochs"], math.ceil(b["lc_min_steps"] / steps))


def make_scratch_model(task: Task, seed: int) -> Path:
    """A re-initialised copy of the base architecture (same E0s, scale/shift and neighbour count)."""
    import torch
    from mace.tools.scripts_utils import extract_config_mace_model

    import sparseft
    from sparseft._compat import default_dtype

    path = task.dir / f"scratch_seed{seed}.model"
    if path.is_file():
        return path
    base = sparseft.load_model(task.base_model)
    config = extract_config_mace_model(base)
    dtype = next(base.parameters()).dtype
    torch.manual_seed(seed)
    with default_dtype(dtype):
        model = type(base)(**config)
    model.load_state_dict(
        {k: v for k, v in base.state_dict().items() if k in dict(model.named_buffers())}, strict=False
    )
    torch.save(model.eval(), path)
    return path
