"""cuEquivariance: a merged model converted with mace-torch's own converter
(``mace.cli.convert_e3nn_cueq``), for mace's fast GPU kernels.

The converter keeps every weight but the symmetric contractions as they are (the same scalars,
reshaped) and maps the contraction weights of each product block linearly (concatenated over
correlation orders, projected onto cuEquivariance's reduced coupling basis), so the converted
model computes the same function. Needs ``cuequivariance-torch`` (``pip install sparseft[cueq]``;
on GPUs also ``cuequivariance-ops-torch-cu12``); without the ops package cuEquivariance falls
back to a slow pure-torch implementation (usable on CPU, for checks only).
"""

from __future__ import annotations

import contextlib
import io
import warnings

from ..._compat import default_dtype, torch


class CueqUnavailable(RuntimeError):
    """cuequivariance-torch is not installed."""


def available() -> bool:
    """Whether cuequivariance-torch can be imported."""
    try:
        import cuequivariance_torch  # noqa: F401
    except ImportError:
        return False
    return True


def to_cueq(model: torch.nn.Module, *, device: str | None = None) -> torch.nn.Module:
    """The cuEquivariance version of a plain MACE model (e.g. ``AdaptedModel.merge()``), on
    ``device`` (default: the model's)."""
    if not available():
        raise CueqUnavailable(
            "cuEquivariance needs cuequivariance-torch: pip install 'sparseft[cueq]' "
            "(and cuequivariance-ops-torch-cu12 for the GPU kernels)"
        )
    from mace.cli.convert_e3nn_cueq import run

    device = device or str(next(model.parameters()).device)
    dtype = next(model.parameters()).dtype
    with default_dtype(dtype), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=".*cuequivariance_ops_torch is not available.*")
        # the converter sets torch's default dtype to the model's; default_dtype restores it
        converted = run(model, device="cuda" if device.startswith("cuda") else "cpu", return_model=True)
    return converted.to(device).eval()
