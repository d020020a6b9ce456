"""Tiny real MACE models, built with mace-torch's own classes, for tests and demos."""

from __future__ import annotations

import numpy as np

from ..._compat import default_dtype, mace, o3, torch  # noqa: F401

_E0 = {1: -13.6, 6: -1029.0, 8: -2042.0, 13: -57.0, 29: -1289.0, 79: -1000.0}


def tiny_mace(
    *,
    hidden_irreps: str = "8x0e+8x1o",
    atomic_numbers: tuple[int, ...] = (1, 8),
    max_ell: int = 2,
    correlation: int = 2,
    num_interactions: int = 2,
    r_max: float = 4.0,
    dtype: torch.dtype = torch.float64,
    interaction: str = "RealAgnosticResidualInteractionBlock",
    first_interaction: str = "RealAgnosticInteractionBlock",
    heads: list[str] | None = None,
    scale_shift: bool = True,
    seed: int = 0,
    mlp_irreps: str = "8x0e",
    radial_mlp: tuple[int, ...] = (16, 16),
    num_bessel: int = 6,
    avg_num_neighbors: float = 8.0,
) -> torch.nn.Module:
    """Build a small ``ScaleShiftMACE`` (or plain ``MACE``) with random (seeded) weights.

    ``hidden_irreps="8x0e"`` gives a scalar-only model, ``"8x0e+8x1o"`` one with l=1
    features. Weights are random but the model is a real mace-torch model in every
    other respect (same classes, same forward, saveable with ``torch.save``).
    """
    from mace import modules

    with default_dtype(dtype):
        torch.manual_seed(seed)
        e0s = np.array([_E0.get(z, -float(z)) for z in atomic_numbers])
        if heads is not None:
            e0s = np.stack([e0s] * len(heads))
        extra = {}
        if scale_shift:
            extra = dict(
                atomic_inter_scale=[1.0] * len(heads) if heads else 1.0,
                atomic_inter_shift=[0.0] * len(heads) if heads else 0.0,
            )
        model_class = modules.ScaleShiftMACE if scale_shift else modules.MACE
        model = model_class(
            r_max=r_max,
            num_bessel=num_bessel,
            num_polynomial_cutoff=5,
            max_ell=max_ell,
            interaction_cls=modules.interaction_classes[interaction],
            interaction_cls_first=modules.interaction_classes[first_interaction],
            num_interactions=num_interactions,
            num_elements=len(atomic_numbers),
            hidden_irreps=o3.Irreps(hidden_irreps),
            MLP_irreps=o3.Irreps(mlp_irreps),
            atomic_energies=e0s,
            avg_num_neighbors=avg_num_neighbors,
            atomic_numbers=list(atomic_numbers),
            correlation=correlation,
            gate=torch.nn.functional.silu,
            radial_MLP=list(radial_mlp),
            heads=heads,
            **extra,
        )
    return model.to(dtype)


# Architectures of public foundation models, for building randomly initialised stand-ins of
# their size (same shapes, random weights): benchmarks and scale tests without a download.
LIKE = {
    "mp0-medium": dict(  # MACE-MP-0 medium: 128x0e+128x1o, max_ell 3, correlation 3, 89 elements
        hidden_irreps="128x0e+128x1o",
        atomic_numbers=tuple(range(1, 90)),
        max_ell=3,
        correlation=3,
        num_interactions=2,
        r_max=6.0,
        num_bessel=10,
        mlp_irreps="16x0e",
        radial_mlp=(64, 64, 64),
        avg_num_neighbors=61.96,
        interaction="RealAgnosticResidualInteractionBlock",
        first_interaction="RealAgnosticResidualInteractionBlock",
    ),
}


def foundation_like(name: str, *, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised model with the architecture of the foundation model ``name``
    (one of :data:`LIKE`)."""
    if name not in LIKE:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(LIKE)}")
    return tiny_mace(**LIKE[name], dtype=dtype, seed=seed)
