"""A second energy readout for another level of theory, with its own E0s.

It starts as a copy of the base model's readout (the backend says which modules: mace's
readouts and scale/shift, sevenn's two readout linears and per-element scale) and E0s, so
before training it predicts exactly what the foundation head predicts; the foundation's own readout is
never touched. A base model's ZBL pair repulsion (``pair_repulsion``), if it has one, is not
part of the head: the head's energy is the readout part plus its own E0s.
"""

from __future__ import annotations

from .._compat import torch
from ..core.facts import e0s_values
from .base import Head, HeadError


class EnergyHead(Head):
    """``E = sum_i [E0(Z_i) + readout(h_i)]``: the base family's energy form (mace:
    ``scale * sum_layers readout_l(h_l) + shift``; sevenn: ``scale_Z * readout(h_last)``), its
    readout modules copied from the base and trained, with the head's own E0s."""

    kind = "energy"
    property = "energy"
    irreps_out = "0e"

    def __init__(self, name: str, options: dict, *, model: torch.nn.Module):
        super().__init__(name, options)
        from ..core.backend import backend_of

        self._backend = backend_of(model)
        try:
            modules = self._backend.energy_readout(model)
        except (HeadError, NotImplementedError) as exc:
            raise HeadError(f"head {name!r}: {exc}") from exc
        for attr, module in modules.items():
            setattr(self, attr, module)
        self.register_buffer("atomic_energies", e0s_values(model).detach().clone())
        for p in self.parameters():
            p.requires_grad_(True)
        for b in self.buffers():  # the per-element scale of sevenn stays fixed, as in sevenn
            b.requires_grad_(False)

    @torch.no_grad()
    def set_e0s(self, values: torch.Tensor) -> None:
        self.atomic_energies.copy_(values.to(self.atomic_energies))

    def forward(self, features, data: dict) -> torch.Tensor:
        batch = data["batch"]
        num_graphs = int(data["ptr"].numel() - 1)
        node_es = self._backend.readout_energies(self, features, data)
        node_e0 = data["node_attrs"].to(node_es.dtype) @ self.atomic_energies
        total = node_e0 + node_es
        return torch.zeros(num_graphs, dtype=total.dtype, device=total.device).index_add_(0, batch, total)
