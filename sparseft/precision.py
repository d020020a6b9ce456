"""dtype names, and converting a model of any backend to a dtype (its backend recomputes the
derived constants, e.g. Clebsch-Gordan coefficients, in the new dtype)."""

from __future__ import annotations

from ._compat import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32, "double": torch.float64}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``None``, a torch dtype, or one of "float32"/"float64"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) in _DTYPES:
        return _DTYPES[str(dtype)]
    raise ValueError(f"dtype must be float32 or float64, not {dtype!r}")


def to_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``model`` (a plain base model) in ``dtype``, by its backend."""
    from .core.backend import backend_of

    return backend_of(model).to_dtype(model, dtype)
