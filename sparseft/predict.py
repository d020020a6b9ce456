"""Run a model (any backend) on ASE structures: ``ase.Atoms`` -> graph items -> batch -> outputs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._compat import torch
from .core.facts import Model


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The floating dtype of a model's parameters."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def graphs(atoms_list, model, *, labels=None, head: str | None = None, config_type_weights: dict | None = None) -> list:
    """Graph items of ``atoms_list`` for ``model`` (any backend): structure, graph within the
    model's cutoff, one-hot over its element table, in its dtype; with ``labels`` (a
    :class:`sparseft.labels.Keys`, labels attached) also the foundation head's labels and loss
    weights (``config_type_weights`` x ``info["config_weight"]``, as in mace)."""
    from .core.backend import backend_of

    return backend_of(model).graphs(
        list(atoms_list), plain_model(model), labels=labels, head=head, config_type_weights=config_type_weights
    )


def plain_model(model):
    """The family's model inside adapters and heads (what carries the element table and cutoff)."""
    from .core.backend import plain

    return plain(model)


def check_structures(atoms_list, model: Model) -> None:
    """Refuse structures no model can evaluate (:func:`sparseft.geometry.check_structure`: no
    atoms, NaN/inf positions or cell, elements the model lacks; coincident atoms are checked on
    the built graph); the error names the structure (``structure 3: ...``) when there are several."""
    from .geometry import StructureError, check_structure

    zs = [int(z) for z in model.atomic_numbers]
    for k, atoms in enumerate(atoms_list):
        try:
            check_structure(atoms, zs, distances=False, cutoff=float(model.r_max))
        except StructureError as exc:
            raise StructureError(f"structure {k}: {exc}" if len(atoms_list) > 1 else str(exc)) from exc


def atoms_to_batch(atoms_list, model: Model, *, head: str | None = None) -> dict:
    """One batch (a dict of tensors on the model's device and dtype); structures are checked
    first (:func:`check_structures`)."""
    from .core.graph import collate, to_device
    from .geometry import check_graph_distances

    check_structures(atoms_list, model)
    batch = to_device(collate(graphs(atoms_list, model, head=head)), model_device(model))
    check_graph_distances(batch)
    return batch


@dataclass
class Prediction:
    """Outputs for one structure, as numpy float64 arrays (eV, eV/Å, eV/Å^3)."""

    energy: float
    forces: np.ndarray | None
    stress: np.ndarray | None
    heads: dict = field(default_factory=dict)  # {head: {"energy", "forces", "stress"} or {"magmoms"}}


def _numpy(value):
    return None if value is None else value.detach().cpu().double().numpy()


def _head_outputs(out: dict, ptr: np.ndarray, i: int) -> dict:
    """Structure ``i``'s slice of every extra head's outputs."""
    result = {}
    for name, values in (out.get("heads") or {}).items():
        mine = {}
        for key, value in values.items():
            array = _numpy(value)
            if array is None:
                continue
            if key == "energy":
                mine[key] = float(array[i])
            elif key == "stress":
                mine[key] = array[i]
            else:  # per-atom quantities: forces, magmoms
                mine[key] = array[ptr[i] : ptr[i + 1]]
        result[name] = mine
    return result


MAX_BATCH_ATOMS = 512  # default batch: whole structures up to this many atoms (at least one)


def batches_by_atoms(atoms_list, batch_size: int | None = None, max_atoms: int = MAX_BATCH_ATOMS) -> list[list[int]]:
    """Indices of consecutive structures per batch: ``batch_size`` structures each, or (None)
    as many whole structures as fit in ``max_atoms`` atoms."""
    groups: list[list[int]] = []
    current: list[int] = []
    count = 0
    for i, atoms in enumerate(atoms_list):
        full = len(current) >= batch_size if batch_size else current and count + len(atoms) > max_atoms
        if full:
            groups.append(current)
            current, count = [], 0
        current.append(i)
        count += len(atoms)
    return groups + ([current] if current else [])


def _predict_batch(model, atoms_list, *, head, forces: bool, stress: bool) -> list[Prediction]:
    batch = atoms_to_batch(atoms_list, model, head=head)
    with torch.set_grad_enabled(forces or stress):  # energies alone need no derivative
        out = model(batch, training=False, compute_force=forces, compute_stress=stress)
    energies = _numpy(out["energy"])
    all_forces = _numpy(out["forces"]) if forces else None
    stresses = _numpy(out["stress"]) if stress else None
    ptr = batch["ptr"].cpu().numpy()
    return [
        Prediction(
            energy=float(energies[i]),
            forces=None if all_forces is None else all_forces[ptr[i] : ptr[i + 1]],
            stress=None if stresses is None else stresses[i],
            heads=_head_outputs(out, ptr, i),
        )
        for i in range(len(atoms_list))
    ]


def predict(
    model: torch.nn.Module,
    atoms_list,
    *,
    head: str | None = None,
    stress: bool | None = None,
    forces: bool = True,
    batch_size: int | None = None,
) -> list[Prediction]:
    """Energy, forces and (for fully periodic structures) stress of each structure, and the
    outputs of every extra head (``Prediction.heads``).

    Structures are evaluated in batches of ``batch_size`` (default: whole structures up to
    :data:`MAX_BATCH_ATOMS` atoms per batch). ``stress=None`` computes stress only when all
    structures are periodic in all three directions; ``forces=False`` (with ``stress=False``)
    computes energies only, without a backward pass or an autograd graph (``forces`` is then None).
    """
    atoms_list = list(atoms_list)
    if stress is None:
        stress = all(bool(a.pbc.all()) for a in atoms_list)
    out: list[Prediction] = []
    for group in batches_by_atoms(atoms_list, batch_size):
        out += _predict_batch(model, [atoms_list[i] for i in group], head=head, forces=forces, stress=stress)
    return out
