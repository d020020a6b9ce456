"""Converting a float32 MACE model to float64 without keeping float32-precision constants (the
mace backend's ``to_dtype``).

``model.double()`` casts the Clebsch-Gordan / symmetric-contraction ``U`` matrices that
were computed in float32, so the float64 model stays equivariant only to ~1e-8. A fresh
build in float64 with mace's own constructor recomputes those constants, which replace the
cast ones in a float64 copy of the loaded model (its learned tensors: parameters, E0s,
scale/shift, are cast).
"""

from __future__ import annotations

import copy
import warnings

from ..._compat import default_dtype, torch
from ...core.facts import data_buffers


def _fresh_constants(model: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state of a model built anew in ``dtype`` with mace's own constructor (its derived
    constants computed in ``dtype``). Only the constants are used, so the model is built without
    e3nn's TorchScript compilation and without opt_einsum's contraction-path search (together
    about 60% of the construction time of a MACE-MP-0-sized model)."""
    import e3nn
    import opt_einsum_fx
    from mace.tools.scripts_utils import extract_config_mace_model

    config = extract_config_mace_model(model)
    if "error" in config:
        raise ValueError(config["error"])
    defaults = e3nn.get_optimization_defaults()
    optimize = opt_einsum_fx.optimize_einsums_full
    e3nn.set_optimization_defaults(jit_script_fx=False, optimize_einsums=False)
    opt_einsum_fx.optimize_einsums_full = lambda model, *args, **kwargs: model  # the traced graph, unoptimised
    try:
        with default_dtype(dtype):
            return type(model)(**config).state_dict()
    finally:
        e3nn.set_optimization_defaults(**defaults)
        opt_einsum_fx.optimize_einsums_full = optimize


def _rebuild(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``model`` in ``dtype`` whose derived buffers (Clebsch-Gordan, ``U`` matrices)
    are recomputed in ``dtype``; learned tensors are cast."""
    learned = {n for n, _ in model.named_parameters()} | set(data_buffers(model))
    fresh = _fresh_constants(model, dtype)
    derived = {}
    for key, value in model.state_dict().items():  # derived buffers must agree to float32 precision
        if key in learned:
            continue
        mine = fresh.get(key)
        if mine is None or mine.shape != value.shape:
            raise ValueError(f"rebuilt model lacks buffer {key}")
        if value.is_floating_point() and not torch.allclose(mine.double(), value.double().cpu(), rtol=1e-4, atol=1e-5):
            raise ValueError(f"rebuilt buffer {key} differs from the original")
        derived[key] = mine
    out = copy.deepcopy(model).to(dtype)
    out.load_state_dict(derived, strict=False)
    return out


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
    """Per-atom energies of both models agree (to float32 precision) on a small cluster of a few
    elements; energies only, without forces: a forward pass each, cheap at foundation size."""
    from ...fingerprint import canonical_structure, spread_elements
    from ...predict import atoms_to_batch

    structure = [canonical_structure(original, spread_elements(original))]
    a, b = (
        m(atoms_to_batch(structure, m), training=False, compute_force=False)["node_energy"].detach().double()
        for m in (original, rebuilt)
    )
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-4 * max(float(a.abs().max()), 1.0)):
        raise ValueError("the rebuilt model's predictions differ from the original's")
