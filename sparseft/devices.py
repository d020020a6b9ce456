"""Device names: ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda``, ``cuda:N``."""

from __future__ import annotations

from ._compat import torch


def resolve_device(name: str) -> str:
    """The torch device for ``name``; ``ValueError`` when CUDA is asked for and absent."""
    name = str(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{name} requested but torch sees no GPU")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}")
    return name
