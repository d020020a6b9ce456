"""What every output head is: a module on a MACE model's node features that declares its
property and output irreps (checked by the equivariance harness)."""

from __future__ import annotations

from .._compat import torch


class HeadError(ValueError):
    """A head that cannot be built on this model, or a malformed head specification."""


class Head(torch.nn.Module):
    """Base class. ``property``: ``energy`` (per structure, forces/stress by autograd) or
    ``magmoms`` (per atom). ``irreps_out``: ``0e`` or ``1e`` per atom (``0e`` per structure
    for energies). ``options`` must rebuild the same architecture (saved in adapter files)."""

    kind: str = ""
    property: str = ""
    irreps_out: str = ""

    def __init__(self, name: str, options: dict):
        super().__init__()
        self.name = name
        self.options = dict(options)

    def spec(self) -> dict:
        """JSON-friendly description that, with the base model, rebuilds this head."""
        return {"name": self.name, "kind": self.kind, "options": dict(self.options)}

    def forward(self, features, data: dict) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
