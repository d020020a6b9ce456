"""Base-model identity: architecture hash, weight hashes and element table.

Weights are hashed after casting to float32, so the same model file loaded as float32 or
converted to float64 has one fingerprint. Adapter files store the fingerprint of the
base they were trained on; loading onto another base reports what differs.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ._compat import torch
from .core.facts import data_buffers, model_heads


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _architecture(model: torch.nn.Module) -> dict:
    arch = {
        "class": type(model).__name__,
        "parameters": {n: list(p.shape) for n, p in model.named_parameters()},
        "r_max": round(float(model.r_max), 6),
        "num_interactions": int(getattr(model, "num_interactions", 0)),
        "heads": model_heads(model),
    }
    if getattr(model, "modality", None) is not None:  # a multi-fidelity model: the modality it predicts
        arch["modality"] = model.modality
    return arch


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()


def fingerprint(model: torch.nn.Module) -> dict:
    """JSON-friendly identity of a (plain, unadapted) base model."""
    arch = _architecture(model)
    weights = {n: _sha(_tensor_bytes(p)) for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    for name in data_buffers(model):
        if name in buffers:
            weights[name] = _sha(_tensor_bytes(buffers[name]))
    return {
        "architecture_sha": _sha(json.dumps(arch, sort_keys=True).encode()),
        "architecture": arch,
        "weights_sha": _sha("".join(f"{k}:{v}" for k, v in sorted(weights.items())).encode()),
        "weights": weights,
        "z_table": [int(z) for z in model.atomic_numbers],
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
    }


def differences(saved: dict, current: dict) -> list[str]:
    """Human-readable list of what differs between two fingerprints (empty: same base)."""
    out = []
    if saved["z_table"] != current["z_table"]:
        out.append(
            f"element table differs: adapter was made for Z={saved['z_table']}, this model has Z={current['z_table']}"
        )
    if saved["architecture_sha"] != current["architecture_sha"]:
        a, b = saved["architecture"], current["architecture"]
        for key in ("class", "r_max", "num_interactions", "heads", "modality"):
            if a.get(key) != b.get(key):
                out.append(f"architecture differs in {key}: {a.get(key)} vs {b.get(key)}")
        pa, pb = a["parameters"], b["parameters"]
        missing = sorted(set(pa) - set(pb))
        extra = sorted(set(pb) - set(pa))
        reshaped = sorted(n for n in set(pa) & set(pb) if pa[n] != pb[n])
        if missing:
            out.append(f"parameters missing from this model: {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if extra:
            out.append(f"parameters this model has in addition: {extra[:4]}{' ...' if len(extra) > 4 else ''}")
        if reshaped:
            n = reshaped[0]
            out.append(f"{len(reshaped)} parameter(s) have other shapes, e.g. {n}: {pa[n]} vs {pb[n]}")
        if not out:
            out.append("architecture differs")
    elif saved["weights_sha"] != current["weights_sha"]:
        changed = sorted(n for n in saved["weights"] if saved["weights"].get(n) != current["weights"].get(n))
        out.append(
            f"weights differ in {len(changed)} of {len(saved['weights'])} tensors, e.g. {changed[:3]} "
            "(same architecture, different training)"
        )
    return out


REFERENCE_ELEMENTS = 4  # elements in the reference structure of an adapter file (at most)


def canonical_structure(model: torch.nn.Module, elements: list[int] | None = None):
    """A fixed small cluster for reference predictions: every element of the model, or only
    ``elements`` (atomic numbers; at least four atoms either way)."""
    from ase import Atoms

    zs = [int(z) for z in (elements if elements else model.atomic_numbers)]
    n = max(len(zs), 4)
    numbers = [zs[i % len(zs)] for i in range(n)]
    rng = np.random.default_rng(1234)
    side = int(np.ceil(n ** (1 / 3)))
    grid = np.array([(i, j, k) for i in range(side) for j in range(side) for k in range(side)][:n], float)
    positions = grid * 1.6 + rng.uniform(-0.2, 0.2, size=grid.shape)
    return Atoms(numbers=numbers, positions=positions)


def spread_elements(model: torch.nn.Module, count: int = REFERENCE_ELEMENTS) -> list[int]:
    """``count`` elements spread evenly over the model's element table (a cheap structure that
    still exercises several per-element weight sets)."""
    zs = [int(z) for z in model.atomic_numbers]
    if len(zs) <= count:
        return zs
    return [zs[round(i * (len(zs) - 1) / (count - 1))] for i in range(count)] if count > 1 else zs[:1]
