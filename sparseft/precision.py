"""Converting a float32 MACE model to float64 without keeping float32-precision constants.

``model.double()`` casts the Clebsch-Gordan / symmetric-contraction ``U`` matrices that
were computed in float32, so the float64 model stays equivariant only to ~1e-8. Rebuilding
the module in float64 with mace's own constructor recomputes those constants; the
learned tensors (parameters, E0s, scale/shift) are then copied over.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._compat import default_dtype, torch
from .mace_facts import DATA_BUFFERS

_DTYPES = {"float32": torch.float32, "float64": torch.float64, "float": torch.float32, "double": torch.float64}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``None``, a torch dtype, or one of "float32"/"float64"."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) in _DTYPES:
        return _DTYPES[str(dtype)]
    raise ValueError(f"dtype must be float32 or float64, not {dtype!r}")


def _rebuild(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" in config:
        raise ValueError(config["error"])
    with default_dtype(dtype):
        fresh = type(model)(**config)
    learned = {n for n, _ in model.named_parameters()} | set(DATA_BUFFERS)
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items() if k in learned}
    fresh.load_state_dict(state, strict=False)
    own = fresh.state_dict()
    for key, value in model.state_dict().items():  # derived buffers must agree to float32 precision
        if key in learned:
            continue
        mine = own.get(key)
        if mine is None or mine.shape != value.shape:
            raise ValueError(f"rebuilt model lacks buffer {key}")
        if value.is_floating_point() and not torch.allclose(
            mine.double(), value.double().to(mine.device), rtol=1e-4, atol=1e-5
        ):
            raise ValueError(f"rebuilt buffer {key} differs from the original")
    return fresh.to(next(model.parameters()).device)


def to_dtype(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``model`` in ``dtype``; float32 -> float64 rebuilds the module so its constants are float64."""
    current = next(model.parameters()).dtype
    if current == dtype:
        return model
    if current == torch.float32 and dtype == torch.float64:
        try:
            rebuilt = _rebuild(model, dtype)
            _check_same(model, rebuilt)
            return rebuilt
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to a plain cast
            warnings.warn(
                f"could not rebuild the model in float64 ({exc}); casting it instead, which keeps "
                "float32-precision constants (rotation errors ~1e-8)",
                stacklevel=2,
            )
    return model.to(dtype)


def _check_same(original, rebuilt) -> None:
    from .fingerprint import canonical_structure
    from .predict import predict

    structure = [canonical_structure(original)]
    a, b = predict(original, structure)[0], predict(rebuilt, structure)[0]
    scale = max(float(np.abs(a.forces).max()), 1.0)
    if (
        abs(a.energy - b.energy) > 1e-4 * max(abs(a.energy), 1.0)
        or float(np.abs(a.forces - b.forces).max()) > 1e-3 * scale
    ):
        raise ValueError("the rebuilt model's predictions differ from the original's")
