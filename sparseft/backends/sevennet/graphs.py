"""ASE structures -> batches for a :class:`SevenNetModel`, with sevenn's own neighbour list."""

from __future__ import annotations

import numpy as np

from ..._compat import torch
from ...core.graph import collate, label_entries, structure_entries
from ._import import sevenn


def edges(atoms, cutoff: float):
    """(senders, receivers, integer shifts) within ``cutoff``: sevenn's graph builder (matscipy when
    installed, else ASE), the one ``SevenNetCalculator`` uses."""
    sevenn()
    from sevenn.train import dataload

    cell = np.array(atoms.get_cell(), dtype=float)  # sevenn enlarges non-periodic cell vectors in place
    src, dst, _vec, shifts = dataload._graph_build_f(cutoff, atoms.get_pbc(), cell, atoms.get_positions())
    return np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64), np.asarray(shifts, dtype=float)


def graphs(atoms_list, model, *, labels=None, config_type_weights: dict | None = None, dtype=None) -> list[dict]:
    """One item per structure (labels and weights under the core's keys when ``labels`` is given)."""
    dtype = dtype or next(p.dtype for p in model.parameters() if p.is_floating_point())
    zs = [int(z) for z in model.atomic_numbers]
    cutoff = float(model.r_max)
    out = []
    for atoms in atoms_list:
        item = structure_entries(atoms, zs, dtype, edges(atoms, cutoff))
        item.update(label_entries(atoms, labels, dtype, config_type_weights))
        out.append(item)
    return out


def batch(atoms_list, model) -> dict:
    """One batch of ``atoms_list`` on the model's device."""
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in collate(graphs(atoms_list, model)).items()}


__all__ = ["batch", "collate", "edges", "graphs", "torch"]
