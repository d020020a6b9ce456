"""Magnetic-moment heads: collinear (a signed invariant per atom, 0e) and vector (an axial
vector per atom, 1e)."""

from __future__ import annotations

import math

from .._compat import torch
from .base import Head, HeadError
from .features import count_channels, describe


def _mlp(n_in: int, hidden: int, n_out: int, *, zero_last: bool) -> torch.nn.Sequential:
    mlp = torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, n_out))
    if zero_last:  # the head starts at its per-element offsets
        torch.nn.init.zeros_(mlp[2].weight)
        torch.nn.init.zeros_(mlp[2].bias)
    return mlp


class InputScaling(torch.nn.Module):
    """Fixed standardisation of a head's inputs (buffers, set once from training data by
    :func:`sparseft.heads.setup.standardize_inputs`): scalars to zero mean and unit spread per
    channel, vectors to unit RMS norm per channel (a scale only, so equivariance is kept).
    Trunk features can be ~0.01 in size; without this a head learns slowly."""

    def __init__(self, scalars: int, vectors: int):
        super().__init__()
        self.register_buffer("scalar_mean", torch.zeros(scalars))
        self.register_buffer("scalar_scale", torch.ones(scalars))
        self.register_buffer("vector_scale", torch.ones(vectors))

    @torch.no_grad()
    def set(self, scalar_mean, scalar_std, vector_rms) -> None:
        self.scalar_mean.copy_(scalar_mean.to(self.scalar_mean))
        self.scalar_scale.copy_(1.0 / scalar_std.to(self.scalar_scale).clamp(min=1e-8))
        if vector_rms is not None and self.vector_scale.numel():
            self.vector_scale.copy_(1.0 / vector_rms.to(self.vector_scale).clamp(min=1e-8))

    def scalars(self, features) -> torch.Tensor:
        return (features.scalars - self.scalar_mean) * self.scalar_scale

    def vectors(self, features) -> torch.Tensor:
        return features.vectors * self.vector_scale[None, :, None]


def total_key(head_name: str) -> str:
    """Batch keys of a structure's total moment and its presence weight (see sparseft.labels)."""
    return f"{head_name}__total_magmom"


class CollinearMagmomHead(Head):
    """``m_i = offset[Z_i] + MLP(scalar features_i)`` (μB), invariant under E(3).

    ``offset`` starts at the per-element mean of the training labels (set by
    :meth:`initialize`), the MLP's last layer at zero, so training starts from the
    per-element-mean baseline. With ``constrain_total``, moments of a structure whose total
    moment is given are shifted equally so that they sum to it.
    """

    kind = "magmom"
    property = "magmoms"
    irreps_out = "0e"

    def __init__(self, name: str, options: dict, *, irreps_list, num_elements: int):
        super().__init__(name, options)
        scalars = count_channels(irreps_list, 0, 1)
        if scalars == 0:
            raise HeadError(f"head {name!r}: the model has no scalar (0e) node features ({describe(irreps_list)})")
        self.inputs = InputScaling(scalars, 0)
        self.mlp = _mlp(scalars, int(options.get("hidden", 32)), 1, zero_last=True)
        self.offset = torch.nn.Parameter(torch.zeros(num_elements))
        self.constrain_total = bool(options.get("constrain_total", False))

    @torch.no_grad()
    def initialize(self, element_means: torch.Tensor) -> None:
        """Start from the per-element mean moment (one value per model element)."""
        self.offset.copy_(element_means.to(self.offset))

    def forward(self, features, data: dict) -> torch.Tensor:
        moments = self.mlp(self.inputs.scalars(features)).squeeze(-1) + data["node_attrs"] @ self.offset
        key = total_key(self.name)
        if self.constrain_total and key in data:
            moments = constrain_to_total(moments, data["batch"], data[key], data[key + "_weight"])
        return moments


def constrain_to_total(moments, batch, total, weight) -> torch.Tensor:
    """Shift each structure's moments equally so that they sum to ``total`` where ``weight > 0``."""
    num_graphs = total.shape[0]
    sums = torch.zeros(num_graphs, dtype=moments.dtype, device=moments.device).index_add_(0, batch, moments)
    counts = torch.bincount(batch, minlength=num_graphs).to(moments.dtype)
    shift = torch.where(weight > 0, (total.to(moments.dtype) - sums) / counts.clamp(min=1), torch.zeros_like(sums))
    return moments + shift[batch]


class VectorMagmomHead(Head):
    """An axial vector per atom (1e) from the model's polar (1o) features.

    Two learned mixes of the 1o channels, ``a_k`` and ``b_k``, give axial vectors ``a_k x b_k``
    (1o x 1o -> 1e), weighted by invariant gates from the scalar features:
    ``m_i = sum_k g_k(s_i) (a_k x b_k)``. A model without 1o features cannot produce an
    axial vector this way (nor any other: scalars alone give only invariants), so it is an error.
    """

    kind = "vector_magmom"
    property = "magmoms"
    irreps_out = "1e"

    def __init__(self, name: str, options: dict, *, irreps_list, num_elements: int):
        super().__init__(name, options)
        vectors = count_channels(irreps_list, 1, -1)
        if vectors == 0:
            raise HeadError(
                f"head {name!r}: a vector (1e) magnetic-moment head needs l=1 odd-parity (1o) node features, "
                f"but this model's node features are {describe(irreps_list)} (scalars only). An axial vector per "
                "atom cannot be built from invariants; use kind: magmom (collinear) or a base model with "
                "max_L >= 1 (e.g. hidden_irreps 128x0e+128x1o)"
            )
        scalars = count_channels(irreps_list, 0, 1)
        channels = int(options.get("channels", 8))
        self.inputs = InputScaling(scalars, vectors)
        self.left = torch.nn.Parameter(torch.randn(vectors, channels) / math.sqrt(vectors))
        self.right = torch.nn.Parameter(torch.randn(vectors, channels) / math.sqrt(vectors))
        self.gate = _mlp(scalars, int(options.get("hidden", 32)), channels, zero_last=False)

    def forward(self, features, data: dict) -> torch.Tensor:
        vectors = self.inputs.vectors(features)
        a = torch.einsum("nvc,vk->nkc", vectors, self.left)
        b = torch.einsum("nvc,vk->nkc", vectors, self.right)
        return torch.einsum("nkc,nk->nc", torch.linalg.cross(a, b, dim=-1), self.gate(self.inputs.scalars(features)))
