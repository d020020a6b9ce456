"""The one place heads are composed with a model: :class:`HeadedModel` of (trunk, heads).

Running it is one forward pass of the trunk, then each head on its node features; forces
and stress of every energy head by autograd.

Output: mace's dict for the foundation head (``energy``, ``forces``, ``stress``, ...) plus
``heads``: ``{name: {"energy", "forces", "stress"}}`` for energy heads and
``{name: {"magmoms"}}`` for magnetic-moment heads.
"""

from __future__ import annotations

import copy
from typing import Any

from .._compat import torch
from ..core.facts import Model, WrapsModel, feature_irreps
from .base import Head, HeadError
from .features import split_features


def _derivatives(energy, positions, displacement, cell, *, training: bool, last: bool):
    """Forces ``-dE/dr`` and, with a displacement, stress ``(1/V) dE/dε`` (mace's and ASE's sign)."""
    inputs = [positions] + ([displacement] if displacement is not None else [])
    grads = torch.autograd.grad(
        [energy.sum()], inputs, retain_graph=training or not last, create_graph=training, allow_unused=True
    )
    forces = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
    stress = None
    if displacement is not None:
        de_dstrain = grads[1] if grads[1] is not None else torch.zeros_like(displacement)
        volume = torch.linalg.det(cell.view(-1, 3, 3)).abs().view(-1, 1, 1)
        stress = de_dstrain / volume
        stress = torch.where(torch.abs(stress) < 1e10, stress, torch.zeros_like(stress))
    return forces, stress


def forward_with_heads(
    trunk,
    heads,
    irreps_list,
    data: dict,
    *,
    training: bool = False,
    compute_force: bool = True,
    compute_stress: bool = False,
    derivative_heads=None,
    **_ignored,
) -> dict:
    """Run ``trunk`` (a mace model, possibly parametrized) and ``heads`` (name -> Head) on a batch.

    ``derivative_heads`` limits forces/stress to those energy heads (``None`` in it = the
    foundation's); by default every energy head gets them (one backward pass each)."""
    data = dict(data)  # mace writes displaced positions into its input dict
    positions = data["positions"]
    positions.requires_grad_(True)
    displacement = None
    if compute_stress:
        num_graphs = int(data["ptr"].numel() - 1)
        displacement = torch.zeros(
            (num_graphs, 3, 3), dtype=positions.dtype, device=positions.device, requires_grad=True
        )
        data["displacement"] = displacement
    out = dict(trunk(data, training=training, compute_force=False, compute_displacement=compute_stress))
    features = split_features(out["node_feats"], irreps_list)
    energies = {None: out["energy"]}
    results = {}
    for name, head in heads.items():
        value = head(features, data)
        if head.property == "energy":
            energies[name] = value
            results[name] = {"energy": value}
        else:
            results[name] = {head.property: value}
    want = compute_force or compute_stress
    names = [n for n in energies if derivative_heads is None or n in derivative_heads]
    for i, name in enumerate(names):
        if not want:
            break
        forces, stress = _derivatives(
            energies[name], positions, displacement, data["cell"], training=training, last=i == len(names) - 1
        )
        target = out if name is None else results[name]
        target["forces"] = forces
        target["stress"] = stress
    out["heads"] = results
    return out


class HeadedModel(WrapsModel):
    """A trunk plus heads, callable like a mace model.

    ``model`` (the trunk) is a plain mace model or an adapted one (anything with a ``base``,
    the unparametrized mace model, ``trainable_parameters()`` and ``merge()``); ``output_heads``
    maps name -> :class:`~sparseft.heads.Head`. The trunk does not know it has heads.
    """

    def __init__(self, model: Model, heads: dict | torch.nn.ModuleDict | list[Head] | None = None):
        super().__init__()
        self.model = model
        self.output_heads: Any = torch.nn.ModuleDict()  # name -> Head
        self.irreps_list = feature_irreps(self.base)
        listed: Any = heads.values() if isinstance(heads, (dict, torch.nn.ModuleDict)) else heads or []
        for head in listed:
            self.add_head(head)

    @property
    def base(self) -> Model:
        """The trunk's unparametrized mace model (what heads are built on)."""
        return getattr(self.model, "base", self.model)

    def add_head(self, head: Head) -> None:
        """Attach a head (built on :attr:`base`, see :func:`sparseft.heads.build_head`)."""
        if head.name in self.output_heads:
            raise HeadError(f"a head named {head.name!r} exists already")
        self.output_heads[head.name] = head

    def head_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.output_heads.parameters() if p.requires_grad]

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The trunk's trainable parameters (an adapted trunk's adapters), then the heads'."""
        trunk = getattr(self.model, "trainable_parameters", None)
        return (trunk() if trunk is not None else []) + self.head_parameters()

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def merge(self) -> "HeadedModel":
        """The adapted trunk merged into a plain mace model, with copies of the heads."""
        return HeadedModel(self.model.merge(), copy.deepcopy(self.output_heads))

    def forward(
        self,
        data: dict,
        training: bool = False,
        compute_force: bool = True,
        compute_stress: bool = False,
        derivative_heads=None,
        **kwargs,
    ) -> dict:
        return forward_with_heads(
            self.model,
            self.output_heads,
            self.irreps_list,
            data,
            training=training,
            compute_force=compute_force,
            compute_stress=compute_stress,
            derivative_heads=derivative_heads,
        )


def split_heads(model: torch.nn.Module) -> tuple[Any, dict[str, Head]]:
    """``(trunk, heads)`` of a :class:`HeadedModel`, ``(model, {})`` of anything else."""
    if isinstance(model, HeadedModel):
        return model.model, dict(model.output_heads)
    return model, {}
