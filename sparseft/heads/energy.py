"""A second energy readout for another level of theory, with its own E0s.

It starts as a copy of the base model's readouts, scale/shift and E0s, so before training
it predicts exactly what the foundation head predicts; the foundation's own readout is
never touched. A base model's ZBL pair repulsion (``pair_repulsion``), if it has one, is not
part of the head: the head's energy is the readout part plus its own E0s.
"""

from __future__ import annotations

import copy

from .._compat import torch
from ..core.facts import e0s_buffer
from .base import Head, HeadError


class EnergyHead(Head):
    """``E = sum_i [E0(Z_i) + scale * sum_layers readout_l(h_i^l) + shift]``: mace's energy form."""

    kind = "energy"
    property = "energy"
    irreps_out = "0e"

    def __init__(self, name: str, options: dict, *, model: torch.nn.Module):
        super().__init__(name, options)
        for attr in ("readouts", "scale_shift", "atomic_energies_fn"):
            if not hasattr(model, attr):
                raise HeadError(
                    f"head {name!r}: the base model ({type(model).__name__}) has no {attr}; "
                    "an energy head needs a mace MACE/ScaleShiftMACE model"
                )
        self.readouts = copy.deepcopy(model.readouts)
        self.scale_shift = copy.deepcopy(model.scale_shift)
        e0s = e0s_buffer(model).detach().clone()
        self.register_buffer("atomic_energies", e0s.reshape(-1, e0s.shape[-1])[0].clone())
        for p in self.parameters():
            p.requires_grad_(True)

    @torch.no_grad()
    def set_e0s(self, values: torch.Tensor) -> None:
        self.atomic_energies.copy_(values.to(self.atomic_energies))

    def forward(self, features, data: dict) -> torch.Tensor:
        batch = data["batch"]
        num_graphs = int(data["ptr"].numel() - 1)
        node_heads = torch.zeros_like(batch)
        rows = torch.arange(batch.shape[0], device=batch.device)
        layers = features.layers
        node_es = 0.0
        for i, readout in enumerate(self.readouts):
            feats = layers[-1] if len(self.readouts) == 1 else layers[i]
            node_es = node_es + readout(feats, node_heads)[rows, node_heads]
        node_es = self.scale_shift(node_es, node_heads)
        node_e0 = data["node_attrs"] @ self.atomic_energies
        total = node_e0 + node_es
        return torch.zeros(num_graphs, dtype=total.dtype, device=total.device).index_add_(0, batch, total)
