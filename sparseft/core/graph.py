"""Family-neutral graph items and batches: the batch vocabulary every backend's model reads.

An item is a dict of tensors for one structure; :func:`collate` joins items into a batch by
concatenating along the first dimension (0-d tensors are stacked; ``edge_index`` is offset by
the nodes before it), and adds ``batch`` (graph of each node) and ``ptr`` (node offsets).
Per-graph quantities carry a leading dimension of 1 (``energy`` (1,), ``stress`` (1, 3, 3),
``cell`` (3, 3)), per-node and per-edge ones their count. A backend whose model needs other
tensors adds them to its items; the keys the core reads are in :mod:`sparseft.core.keys`.
"""

from __future__ import annotations

import numpy as np

from .._compat import torch
from . import keys as K


def label_entries(atoms, labels, dtype: torch.dtype, config_type_weights: dict | None = None) -> dict:
    """The foundation head's labels of one frame (``labels``: a :class:`sparseft.labels.Keys`,
    labels already attached) and its loss weights, under the core's keys; a missing label gets
    weight 0 (as mace: ``config_weight`` x ``config_type_weights[config_type]``, and
    ``config_<quantity>_weight``)."""
    out = {}
    if labels is not None:
        for key, value in labels.tensors(atoms, "", dtype).items():
            name = key[2:]  # head name "" plus "__"
            if name.endswith("_weight"):
                value = value * float(atoms.info.get(f"config_{name[: -len('_weight')]}_weight", 1.0))
            out[name] = value
    weight = float(atoms.info.get("config_weight", 1.0))
    weight *= float((config_type_weights or {}).get(atoms.info.get("config_type", "Default"), 1.0))
    out[K.WEIGHT] = torch.tensor([weight], dtype=dtype)
    return out


def structure_entries(atoms, zs: list[int], dtype: torch.dtype, edges) -> dict:
    """Positions, cell, one-hot over ``zs`` and the graph (``edges``: sender, receiver and integer
    cell shifts per edge) of one structure."""
    senders, receivers, unit_shifts = edges
    index = {z: i for i, z in enumerate(zs)}
    types = torch.tensor([index[int(z)] for z in atoms.numbers], dtype=torch.long)
    cell = torch.tensor(np.asarray(atoms.get_cell()), dtype=dtype)
    unit = torch.tensor(np.asarray(unit_shifts, dtype=float).reshape(-1, 3), dtype=dtype)
    return {
        K.POSITIONS: torch.tensor(atoms.get_positions(), dtype=dtype),
        K.CELL: cell,
        K.NODE_ATTRS: torch.nn.functional.one_hot(types, len(zs)).to(dtype),
        K.EDGE_INDEX: torch.tensor(np.stack([senders, receivers]), dtype=torch.long).reshape(2, -1),
        K.UNIT_SHIFTS: unit,
        K.SHIFTS: unit @ cell,
    }


def collate(items: list[dict]) -> dict:
    """One batch of ``items`` (see the module docstring)."""
    counts = [int(item[K.POSITIONS].shape[0]) for item in items]
    ptr = torch.tensor([0, *np.cumsum(counts)], dtype=torch.long)
    out: dict = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == K.EDGE_INDEX:
            out[key] = torch.cat([v + ptr[i] for i, v in enumerate(values)], dim=1)
        elif values[0].dim() == 0:
            out[key] = torch.stack(values)
        else:
            out[key] = torch.cat(values, dim=0)
    out[K.BATCH] = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
    out[K.PTR] = ptr
    return out


def to_device(batch: dict, device) -> dict:
    """Every tensor of ``batch`` on ``device``."""
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def loader(dataset: list, batch_size: int, *, shuffle: bool, seed: int = 0):
    """Batches (CPU) of ``dataset`` items; shuffling is a pure function of ``seed`` (resumable
    runs; torch's sampler, so the order is the one mace's loader gave)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset,  # type: ignore[arg-type]  # a list is a map-style dataset
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=False,
        generator=generator,
        collate_fn=collate,
    )
