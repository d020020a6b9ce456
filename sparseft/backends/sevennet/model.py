"""``SevenNetModel``: a sevenn ``AtomGraphSequential`` behind sparseft's model protocol.

The protocol is what the core calls on a base model: ``forward(batch, training=,
compute_force=, compute_stress=, compute_displacement=)`` returning ``energy`` [graphs],
``node_energy``, ``forces``, ``stress`` (eV/Å^3, ASE sign) and ``node_feats`` (every
interaction layer's node features, concatenated, for heads), plus ``atomic_numbers``, ``r_max``
and ``heads``. A multi-fidelity model (SevenNet-MF-0) runs at one modality, chosen at load
(``base.modality``); its per-modality energy shift is a ``[modalities, elements]`` buffer whose
row of that modality holds the E0s. The sevenn modules run unchanged, in sevenn's order; sparseft feeds them the
one-hot in the model's dtype (sevenn's own one-hot module casts to float32) and takes forces and
stress by autograd through a symmetric displacement, as mace does. The per-element energy
shift and scale and the convolution denominators, which sevenn does not train by default,
are buffers here (same state-dict names), so only weights are adaptable.
"""

from __future__ import annotations

from ..._compat import torch

SKIPPED = ("onehot_idx_to_onehot", "force_output")  # done here: one-hot in the model's dtype, autograd forces
FROZEN = (".denominator", "rescale_atomic_energy.shift", "rescale_atomic_energy.scale")
SHIFT = "net.rescale_atomic_energy.shift"  # per-element energy shift: sevenn's E0s
SCALE = "net.rescale_atomic_energy.scale"
GATE = "_equivariant_gate"
MODAL_TYPE = "modal_type"  # sevenn's KEY.MODAL_TYPE: the modality index of each graph


def _to_buffers(net: torch.nn.Module) -> None:
    """Turn the non-trained parameters (shift, scale, denominators) into buffers of the same name."""
    for name, param in list(net.named_parameters()):
        if any(name.endswith(f) for f in FROZEN):
            owner_name, _, attr = name.rpartition(".")
            owner = net.get_submodule(owner_name)
            del owner._parameters[attr]
            owner.register_buffer(attr, param.detach().clone())


class SevenNetModel(torch.nn.Module):
    """A sevenn model (``net``) with sparseft's model protocol; ``config`` is its checkpoint config."""

    def __init__(self, net: torch.nn.Module, config: dict, name: str = "", modality: str | None = None):
        super().__init__()
        modal_map = dict(getattr(net, "modal_map", None) or {})
        if modal_map and modality not in modal_map:
            given = f"{modality!r} is not one of its modalities" if modality else "choose its modality (base.modality)"
            raise ValueError(f"{name}: a multi-fidelity model: {given} ({', '.join(modal_map)})")
        if not modal_map and modality not in (None, "Default"):
            raise ValueError(f"{name}: modality {modality!r} given, but the model has no modalities")
        self.modality = modality if modal_map else None  # the fidelity every prediction uses
        self.modal_index = modal_map[modality] if modal_map else None
        _to_buffers(net)
        self.net = net
        self.config = dict(config)
        self.source = name
        type_map = dict(net.type_map)
        zs = sorted(type_map, key=lambda z: type_map[z])
        self.register_buffer("atomic_numbers", torch.tensor(zs, dtype=torch.long))
        self.register_buffer("r_max", torch.tensor(float(net.cutoff), dtype=torch.get_default_dtype()))
        self.num_interactions = int(config.get("num_convolution_layer", 0))
        self.heads = ["Default"]

    def feature_irreps(self) -> list:
        """e3nn ``Irreps`` of each interaction layer's output node features."""
        from e3nn import o3

        return [o3.Irreps(str(m.gate.irreps_out)) for n, m in self.net._modules.items() if n.endswith(GATE)]

    def forward(
        self,
        data: dict,
        training: bool = False,
        compute_force: bool = True,
        compute_stress: bool = False,
        compute_displacement: bool = False,
        **_ignored,
    ) -> dict:
        batch = data["batch"]
        num_graphs = int(data["ptr"].numel() - 1)
        positions, cell, displacement = _strained(
            data, num_graphs, compute_force or compute_stress, compute_stress or compute_displacement
        )
        onehot = data["node_attrs"].to(positions.dtype)
        sender, receiver = data["edge_index"]
        unit_shifts = data["unit_shifts"].to(positions.dtype)
        vectors = positions[receiver] - positions[sender]
        vectors = vectors + torch.einsum("ni,nij->nj", unit_shifts, cell[batch[sender]])
        sv = {
            "pos": positions,
            "edge_vec": vectors,
            "edge_index": data["edge_index"],
            "batch": batch,
            "x": onehot,
            "node_attr": onehot,
            "atom_type": onehot.argmax(dim=-1),
            "num_atoms": data["ptr"][1:] - data["ptr"][:-1],
        }
        if self.modal_index is not None:  # a multi-fidelity model: every graph at the chosen modality
            sv[MODAL_TYPE] = torch.full((num_graphs,), self.modal_index, dtype=torch.long, device=positions.device)
        features = []
        for name, module in self.net._modules.items():
            if name in SKIPPED:
                continue
            sv = module(sv)
            if name.endswith(GATE):
                features.append(sv["x"])
        node_energy = sv["atomic_energy"].reshape(-1)
        energy = torch.zeros(num_graphs, dtype=node_energy.dtype, device=node_energy.device).index_add(
            0, batch, node_energy
        )
        out = {"energy": energy, "node_energy": node_energy, "node_feats": torch.cat(features, dim=-1)}
        out["forces"], out["stress"] = _derivatives(energy, data, displacement, training, compute_force, compute_stress)
        out["displacement"] = displacement
        return out


def _strained(data: dict, num_graphs: int, need_positions_grad: bool, need_displacement: bool):
    """Positions and cells with the symmetric strain ``displacement`` applied (created, zero and
    requiring grad, when stress or the displacement is asked for and the batch has none; also put
    in ``data``): ``(positions, cell, displacement or None)``."""
    positions = data["positions"]
    cell = data["cell"].view(-1, 3, 3)
    if need_positions_grad:
        positions.requires_grad_(True)
    displacement = data.get("displacement")
    if displacement is None and need_displacement:
        displacement = torch.zeros((num_graphs, 3, 3), dtype=positions.dtype, device=positions.device)
        displacement.requires_grad_(True)
        data["displacement"] = displacement
    if displacement is not None:
        sym = 0.5 * (displacement + displacement.transpose(-1, -2))
        positions = positions + torch.bmm(positions.unsqueeze(-2), sym[data["batch"]]).squeeze(-2)
        cell = cell + torch.bmm(cell, sym)
    return positions, cell, displacement


def _derivatives(energy, data: dict, displacement, training: bool, compute_force: bool, compute_stress: bool):
    """Forces (``-dE/dpositions``) and stress (``dE/dstrain / volume``, non-finite-large entries
    zeroed) as asked: ``(forces or None, stress or None)``."""
    if not (compute_force or compute_stress):
        return None, None
    positions = data["positions"]
    inputs = [positions] + ([displacement] if compute_stress else [])
    grads = torch.autograd.grad([energy.sum()], inputs, create_graph=training, retain_graph=training, allow_unused=True)
    forces = stress = None
    if compute_force:
        forces = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
    if compute_stress:
        volume = torch.linalg.det(data["cell"].view(-1, 3, 3)).abs().view(-1, 1, 1)
        stress = (grads[-1] if grads[-1] is not None else torch.zeros_like(displacement)) / volume
        stress = torch.where(torch.abs(stress) < 1e10, stress, torch.zeros_like(stress))
    return forces, stress
