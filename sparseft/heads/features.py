"""A MACE model's node features, split into the parts heads read: invariant scalars (0e) and
polar vectors (1o), per interaction layer and pooled over layers.

mace returns ``node_feats``: the output of every interaction layer's product block,
concatenated (``32x0e+32x1o`` for inner layers, the scalar part only for the last one).
"""

from __future__ import annotations

from dataclasses import dataclass

from .._compat import torch
from ..core.facts import feature_irreps  # noqa: F401  (re-exported: heads read it from here)


def describe(irreps_list) -> str:
    return " | ".join(str(irreps) for irreps in irreps_list)


def count_channels(irreps_list, degree: int, parity: int) -> int:
    """Channels of irrep ``degree``/``parity`` (l, p) summed over layers."""
    return sum(mul for irreps in irreps_list for mul, ir in irreps if ir.l == degree and ir.p == parity)


@dataclass
class NodeFeatures:
    """Per-atom features split by irrep.

    ``layers``: each layer's full feature tensor; ``scalars``: [atoms, S] every 0e channel;
    ``vectors``: [atoms, V, 3] every 1o channel (e3nn's l=1 basis is Cartesian x, y, z), or
    None when the model has no 1o features."""

    layers: list
    scalars: torch.Tensor
    vectors: torch.Tensor | None


def split_features(node_feats: torch.Tensor, irreps_list) -> NodeFeatures:
    """Split mace's concatenated ``node_feats`` by layer and irrep."""
    layers, scalars, vectors = [], [], []
    start = 0
    for irreps in irreps_list:
        layer = node_feats[:, start : start + irreps.dim]
        layers.append(layer)
        offset = 0
        for mul, ir in irreps:
            width = mul * ir.dim
            block = layer[:, offset : offset + width]
            if ir.l == 0 and ir.p == 1:
                scalars.append(block)
            elif ir.l == 1 and ir.p == -1:
                vectors.append(block.reshape(-1, mul, 3))
            offset += width
        start += irreps.dim
    if start != node_feats.shape[-1]:
        raise ValueError(
            f"node_feats has {node_feats.shape[-1]} columns, the layers' irreps {describe(irreps_list)} give {start}"
        )
    return NodeFeatures(
        layers=layers,
        scalars=torch.cat(scalars, dim=-1),
        vectors=torch.cat(vectors, dim=1) if vectors else None,
    )
