"""sevenn checkpoints: load a base by shipped name or file; write a merged model as one."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime
from pathlib import Path

from ..._compat import torch
from ._import import sevenn
from .model import SevenNetModel

PREFIX = "sevennet:"
SHIPPED = {  # sparseft name -> sevenn's pretrained name (checkpoints inside the sevenn wheel)
    "7net-0": "7net-0",
    "7net-0-22may2024": "7net-0_22May2024",
    "7net-l3i5": "7net-l3i5",
    "7net-mf-0": "7net-mf-0",  # multi-fidelity (modalities R2SCAN, PBE): needs base.modality
}


class SevenNetLoadError(ValueError):
    """A sevenn name or file that cannot be used as a base model (one line)."""


def shipped_names() -> list[str]:
    """``sevennet:<name>`` of every checkpoint the sevenn wheel ships that sparseft loads."""
    return [PREFIX + n for n in SHIPPED]


def resolve(name: str) -> Path:
    """The checkpoint file of ``sevennet:<name>`` or of a ``.pth`` path."""
    text = str(name)
    if text.startswith(PREFIX):
        short = text[len(PREFIX) :].lower()
        if short not in SHIPPED:
            raise SevenNetLoadError(f"{text}: unknown SevenNet model; accepted: {', '.join(shipped_names())}")
        sevenn()
        from sevenn import util

        return Path(util.pretrained_name_to_path(SHIPPED[short]))
    path = Path(text)
    if not path.is_file():
        raise SevenNetLoadError(f"{path}: no such file")
    return path


def read(path: Path) -> dict:
    """The raw checkpoint dict (a pickle: only load trusted files)."""
    try:
        cp = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise SevenNetLoadError(f"{path}: not a readable torch file ({type(exc).__name__})") from exc
    if not isinstance(cp, dict) or "config" not in cp or "model_state_dict" not in cp:
        raise SevenNetLoadError(f"{path}: not a sevenn checkpoint (no config / model_state_dict)")
    return cp


def load(name: str, *, dtype=None, device: str = "cpu", modality: str | None = None) -> SevenNetModel:
    """A :class:`SevenNetModel` of a sevenn checkpoint (by ``sevennet:<name>`` or path), at
    ``modality`` for a multi-fidelity one."""
    path = resolve(name)
    read(path)  # a clear error for files that are not checkpoints
    sevenn()
    from sevenn.checkpoint import SevenNetCheckpoint

    cp = SevenNetCheckpoint(str(path))
    try:
        model = SevenNetModel(cp.build_model(), cp.config, name=str(name), modality=modality)
    except ValueError as exc:
        raise SevenNetLoadError(str(exc)) from exc
    model.checkpoint_path = str(path)
    if dtype is not None:
        model = to_dtype(model, dtype)
    return model.to(device).eval()


@torch.no_grad()
def to_dtype(model: SevenNetModel, dtype: torch.dtype) -> SevenNetModel:
    """``model`` in ``dtype``. The learned tensors are cast; the derived constants, the
    ``_w3j_<l1>_<l2>_<l3>`` Clebsch-Gordan buffers of the compiled tensor products, are
    recomputed in ``dtype`` (each checked against the cast one first), so a float64 model is
    equivariant to float64 precision, not float32's."""
    import re

    from e3nn import o3

    current = next(model.parameters()).dtype
    if current == dtype:
        return model
    out = copy.deepcopy(model).to(dtype)
    for name, buffer in list(out.named_buffers()):
        match = re.search(r"_w3j_(\d+)_(\d+)_(\d+)$", name)
        if match is None:
            continue
        exact = o3.wigner_3j(*(int(g) for g in match.groups()), dtype=dtype, device=buffer.device)
        if exact.shape != buffer.shape or not torch.allclose(exact, buffer, atol=1e-5):
            raise SevenNetLoadError(f"{name}: the stored Clebsch-Gordan coefficients differ from e3nn's")
        owner_name, _, attr = name.rpartition(".")
        setattr(out.get_submodule(owner_name), attr, exact)
    return out


@torch.no_grad()
def save(model: SevenNetModel, path) -> None:
    """Write ``model`` as a sevenn checkpoint (float32, sevenn's layout) to ``path``: what
    ``SevenNetCalculator(model=path)`` and ``sevenn get_model`` load."""
    from ...files import save_torch

    module = sevenn()
    from sevenn.checkpoint import SevenNetCheckpoint

    base = SevenNetCheckpoint(model.checkpoint_path)
    config = base.config  # sevenn's resolved config: its loader patches an old checkpoint's state once
    config["version"] = module.__version__  # the state below is this version's layout: no second patch
    config.pop("_flash_lammps", None)
    state = {
        k[len("net.") :]: v.detach().to("cpu", torch.float32).clone()
        for k, v in model.state_dict().items()
        if k.startswith("net.")
    }
    missing = set(base.model_state_dict) - set(state)
    if missing:
        raise SevenNetLoadError(f"merged model lacks {sorted(missing)[:3]} of the base checkpoint")
    out = {
        "config": config,
        "epoch": base.epoch,
        "model_state_dict": {k: state[k] for k in base.model_state_dict},
        "optimizer_state_dict": {},
        "scheduler_state_dict": {},
        "time": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "hash": uuid.uuid4().hex,
    }
    save_torch(out, path)
