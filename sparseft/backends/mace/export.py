"""Energy heads as mace-torch's own multi-head models, and plain single-head MACE models (the
mace backend's ``export_head`` and ``native_heads``).

A native multi-head ``ScaleShiftMACE`` (what mace's multihead fine-tuning writes) shares the
trunk and keeps one readout column, one scale/shift and one E0 row per head; mace's tools
pick a head by name (``MACECalculator(head=...)``, ``mace_create_lammps_model --head``,
``mace_eval_configs --head``). :func:`to_mace_multihead` lays a trunk's foundation readout
and sparseft energy heads out that way (the inverse of mace's ``remove_pt_head``), so each
head's energies, forces and stress are unchanged; :func:`single_head` keeps one head.
"""

from __future__ import annotations

import numpy as np

from ..._compat import default_dtype, torch
from ...export import ExportError, energy_heads

SUPPORTED_READOUTS = ("LinearReadoutBlock", "NonLinearReadoutBlock")


def _check_foundation(model) -> None:
    name = type(model).__name__
    if name != "ScaleShiftMACE":
        raise ExportError(f"a mace multi-head model needs a ScaleShiftMACE trunk, not {name}")
    if len(list(getattr(model, "heads", ["Default"]))) != 1:
        raise ExportError(
            f"the trunk already has several mace heads {list(model.heads)}; fine-tune one "
            "(base.head) to add sparseft heads to it"
        )
    for attr in ("pair_repulsion", "embedding_readout", "joint_embedding"):
        if hasattr(model, attr):
            raise ExportError(f"the trunk has {attr}, which sparseft energy heads do not reproduce per head")
    for readout in model.readouts:
        if type(readout).__name__ not in SUPPORTED_READOUTS:
            raise ExportError(f"readout {type(readout).__name__} is not one of {', '.join(SUPPORTED_READOUTS)}")


def _e0_row(values: torch.Tensor) -> np.ndarray:
    return values.detach().reshape(-1, values.shape[-1])[0].cpu().double().numpy()


def _readout_weights(prefix: str, sources: list, num_heads: int) -> dict:
    """mace's multi-head layout of readout ``prefix`` from one single-head readout per head
    (see ``mace.tools.scripts_utils.remove_pt_head``, which undoes it)."""
    kind = type(sources[0]).__name__
    if kind == "LinearReadoutBlock":  # weight (C, heads)
        return {f"{prefix}.linear.weight": torch.stack([s.linear.weight.reshape(-1) for s in sources], 1).flatten()}
    mlp = sources[0].linear_2.weight.numel()  # hidden units per head
    first = torch.stack([s.linear_1.weight.reshape(-1, mlp) for s in sources], 1)  # (C, heads, M)
    second = torch.zeros(num_heads, mlp, num_heads, dtype=first.dtype, device=first.device)
    for h, s in enumerate(sources):  # block-diagonal; the fan-in grows heads-fold, so does the weight
        second[h, :, h] = s.linear_2.weight.reshape(-1) * num_heads**0.5
    return {f"{prefix}.linear_1.weight": first.flatten(), f"{prefix}.linear_2.weight": second.flatten()}


@torch.no_grad()
def to_mace_multihead(model: torch.nn.Module, heads: dict) -> torch.nn.Module:
    """A native mace multi-head model: heads ``[model.heads[0], *heads]``, the trunk of
    ``model`` (a single-head ScaleShiftMACE), the foundation readout first, then each
    :class:`~sparseft.heads.energy.EnergyHead`'s readouts, scale/shift and E0s."""
    from mace.tools.scripts_utils import extract_config_mace_model

    _check_foundation(model)
    names = [str(model.heads[0] if hasattr(model, "heads") else "Default"), *heads]
    if len(set(names)) != len(names):
        raise ExportError(f"head names {names} repeat (the foundation's mace head is {names[0]!r})")
    if not heads:
        raise ExportError("no energy heads to add")
    for name, head in heads.items():
        if getattr(head, "property", None) != "energy":
            raise ExportError(f"head {name!r} predicts {getattr(head, 'property', '?')}: mace has no form for it")
    parts = [(model.readouts, model.scale_shift, model.atomic_energies_fn.atomic_energies)]
    parts += [(h.readouts, h.scale_shift, h.atomic_energies) for h in heads.values()]
    config = extract_config_mace_model(model)
    config["heads"] = names
    config["atomic_energies"] = np.stack([_e0_row(e0) for _, _, e0 in parts])
    config["atomic_inter_scale"] = [float(s.scale.reshape(-1)[0]) for _, s, _ in parts]
    config["atomic_inter_shift"] = [float(s.shift.reshape(-1)[0]) for _, s, _ in parts]
    dtype = next(model.parameters()).dtype
    with default_dtype(dtype):
        native = type(model)(**config)
    state = native.state_dict()
    own = ("readouts.", "scale_shift.", "atomic_energies_fn.")
    state.update({k: v for k, v in model.state_dict().items() if not k.startswith(own)})
    for i in range(len(model.readouts)):
        state.update(_readout_weights(f"readouts.{i}", [readouts[i] for readouts, _, _ in parts], len(names)))
    native.load_state_dict(state, strict=True)
    return native.to(device=next(model.parameters()).device, dtype=dtype).eval()


def single_head(model: torch.nn.Module, head: str) -> torch.nn.Module:
    """One plain single-head mace model for ``head`` of a native multi-head ``model``
    (mace's own ``remove_pt_head``)."""
    from mace.tools.scripts_utils import remove_pt_head

    heads = list(getattr(model, "heads", None) or ["Default"])
    if head not in heads:
        raise ExportError(f"head {head!r} not found; the model's heads are {heads}")
    if len(heads) == 1:
        return model
    with default_dtype(next(model.parameters()).dtype):
        return remove_pt_head(model, head).eval()


def native_from(model) -> torch.nn.Module:
    """A mace model with every energy head of ``model`` as a mace head: a plain mace model as
    it is, a model with sparseft heads through :func:`to_mace_multihead` (its moment heads,
    which mace has no form for, are left out)."""
    heads = energy_heads(model)
    if not hasattr(model, "output_heads"):
        return model
    if not heads:
        raise ExportError(
            f"the model's heads {list(model.output_heads)} are all magnetic-moment heads; "
            "mace has no form for them (use sparseft.Calculator)"
        )
    return to_mace_multihead(model.model, heads)


def export_head(model, head: str | None) -> torch.nn.Module:
    """``head`` as one plain single-head mace model, or (no ``head``) the native multi-head model
    of every energy head."""
    extra = getattr(model, "output_heads", None) or {}
    if head is not None and head in extra and extra[head].property != "energy":
        raise ExportError(
            f"head {head!r} predicts {extra[head].property}: mace has no form for it "
            "(use sparseft.Calculator(..., magmom_head=...))"
        )
    native = native_from(model)
    return native if head is None else single_head(native, head)
