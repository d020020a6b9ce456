"""Deliberately broken model wrappers, to prove that the equivariance checks can fail.

Each wrapper runs a real MACE model and then perturbs its output dict so that one symmetry
is broken. The perturbations are large (against energies of thousands of eV and forces of
~0.2 eV/Å) so they fail in float32 as well as float64.

===============================  =================  ===================================
wrapper                          fails              perturbation
===============================  =================  ===================================
``AbsolutePositionEnergy``       translation,       energy += k * sum_i x_i
                                 rotation (and
                                 more)
``ConstantForce``                rotation,          forces += constant vector
                                 inversion
``AxialForce``                   inversion only     forces += k * u_i x v_i (axial)
``IndexCoupledForce``            permutation only   forces_i += k * forces_{i+1}
``UnwrappedEdgeForce``           periodic_images,   forces_i += k * sum_j (p_j - p_i),
                                 supercell          edge vectors without cell shifts
``SizeIndependentOffset``        supercell only     energy += constant per structure
``PolarVectorMagmomHead``        inversion only     a head declared 1e whose moments are 1o
===============================  =================  ===================================
"""

from __future__ import annotations

from .._compat import torch
from ..heads.magmom import VectorMagmomHead


class BrokenModel(torch.nn.Module):
    """Calls ``model`` like mace does and lets :meth:`perturb` change the outputs.

    Attributes the wrapper lacks (``atomic_numbers``, ``r_max``, ``heads``, ...) are read
    from the wrapped model.
    """

    def __init__(self, model: torch.nn.Module, strength: float = 1.0):
        super().__init__()
        self.model = model
        self.strength = strength

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("model")
            if inner is None:
                raise
            return getattr(inner, name)

    def forward(self, data: dict, training: bool = False, compute_force: bool = True, **kwargs) -> dict:
        out = dict(self.model(data, training=training, compute_force=compute_force, **kwargs))
        with torch.no_grad():
            self.perturb(data, out)
        return out

    def perturb(self, data: dict, out: dict) -> None:
        raise NotImplementedError


def _per_structure_sum(values: torch.Tensor, data: dict) -> torch.Tensor:
    """Sum per-atom values over each structure of the batch."""
    n_structures = data["ptr"].numel() - 1
    total = torch.zeros((n_structures, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return total.index_add_(0, data["batch"], values)


def _edge_vectors(data: dict, *, with_shifts: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(sender index, sender -> receiver vector) of every edge, as mace computes them."""
    sender, receiver = data["edge_index"]
    positions = data["positions"].detach()
    vectors = positions[receiver] - positions[sender]
    if with_shifts:
        vectors = vectors + data["shifts"]
    return sender, vectors


class AbsolutePositionEnergy(BrokenModel):
    """Energy depends on the absolute x coordinates: not translation or rotation invariant."""

    def perturb(self, data, out):
        x = data["positions"].detach()[:, 0]
        out["energy"] = out["energy"] + 10.0 * self.strength * _per_structure_sum(x, data)


class ConstantForce(BrokenModel):
    """The same force vector added to every atom: a fixed direction in space."""

    def perturb(self, data, out):
        direction = torch.tensor([1.0, 0.5, -0.3], dtype=out["forces"].dtype, device=out["forces"].device)
        out["forces"] = out["forces"] + self.strength * direction


class AxialForce(BrokenModel):
    """Adds ``u_i x v_i`` with ``u_i = sum_j r_ij`` and ``v_i = sum_j |r_ij| r_ij``.

    A cross product of two polar vectors is axial: it rotates like a force but does not
    change sign under inversion, so only the inversion check fails.
    """

    def perturb(self, data, out):
        sender, vectors = _edge_vectors(data)
        lengths = vectors.norm(dim=1, keepdim=True)
        u = torch.zeros_like(out["forces"]).index_add_(0, sender, vectors)
        v = torch.zeros_like(out["forces"]).index_add_(0, sender, lengths * vectors)
        out["forces"] = out["forces"] + 0.1 * self.strength * torch.linalg.cross(u, v)


class IndexCoupledForce(BrokenModel):
    """Adds to each atom's force the force on the next atom (by index, cyclic per structure).

    Equivariant under E(3) and consistent under supercells (the next atom of the last
    copy is the first atom), but depends on the order of the atoms.
    """

    def perturb(self, data, out):
        forces = out["forces"]
        ptr = data["ptr"].tolist()
        following = torch.cat([torch.roll(forces[a:b], -1, dims=0) for a, b in zip(ptr[:-1], ptr[1:])])
        out["forces"] = forces + self.strength * following


class UnwrappedEdgeForce(BrokenModel):
    """Adds ``sum_j (p_j - p_i)`` over edges, forgetting the periodic cell shifts.

    The classic unwrapped-positions bug: harmless for clusters, but the force changes when
    an atom is moved to another periodic image.
    """

    def perturb(self, data, out):
        sender, vectors = _edge_vectors(data, with_shifts=False)
        extra = torch.zeros_like(out["forces"]).index_add_(0, sender, vectors)
        out["forces"] = out["forces"] + 0.1 * self.strength * extra


class SizeIndependentOffset(BrokenModel):
    """A constant energy per structure, whatever its size: not extensive."""

    def perturb(self, data, out):
        out["energy"] = out["energy"] + 100.0 * self.strength


class PolarVectorMagmomHead(VectorMagmomHead):
    """A vector magnetic-moment head that declares ``1e`` but outputs a *polar* vector (a
    plain mix of the 1o features): right under rotations, wrong sign under inversion."""

    def forward(self, features, data):
        return torch.einsum("nvc,v->nc", features.vectors, self.left[:, 0])
