"""Labels of extra heads as per-frame tensors for mace batches: ``<head>__<quantity>`` plus a
per-frame ``<head>__<quantity>_weight`` (1 present, 0 missing; missing values are zeros)."""

from __future__ import annotations

import numpy as np

from .._compat import torch


def _entry(value, shape, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    if value is None:
        return torch.zeros(shape, dtype=dtype), torch.zeros(1, dtype=dtype)
    return torch.tensor(np.asarray(value, dtype=float).reshape(shape), dtype=dtype), torch.ones(1, dtype=dtype)


def head_label_tensors(atoms, name: str, keys, dtype) -> dict[str, torch.Tensor]:
    """Tensors for one frame and one head; ``keys`` is a ``data.Keys`` (energy head) or
    ``data.MagmomKeys`` (magnetic-moment head), with labels already attached to ``atoms``."""
    from ..data import MagmomKeys

    n = len(atoms)
    get = lambda store, key: store.get(key) if key is not None else None  # noqa: E731
    if isinstance(keys, MagmomKeys):
        entries = {
            "magmoms": _entry(get(atoms.arrays, keys.magmoms), (n, 3) if keys.vector else (n,), dtype),
            "total_magmom": _entry(get(atoms.info, keys.total), (1,), dtype),
        }
    else:
        entries = {
            "energy": _entry(get(atoms.info, keys.energy), (1,), dtype),
            "forces": _entry(get(atoms.arrays, keys.forces), (n, 3), dtype),
            "stress": _entry(get(atoms.info, keys.stress), (1, 3, 3), dtype),
        }
    out = {}
    for quantity, (value, weight) in entries.items():
        out[f"{name}__{quantity}"] = value
        out[f"{name}__{quantity}_weight"] = weight
    return out
