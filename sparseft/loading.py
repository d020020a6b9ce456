"""Load a base model of any backend by name or file (``base.model`` of a recipe)."""

from __future__ import annotations

from pathlib import Path

from ._compat import torch
from .trust import UntrustedModelWarning  # re-exported: sparseft.loading.UntrustedModelWarning

TRUST_WARNING = (
    "a model file (mace .model, sevenn .pth) is a pickled Python object: loading it runs code from the file, "
    "so only load files you trust"
)

__all__ = ["HeadNotFoundError", "ModelLoadError", "UntrustedModelWarning", "load_base_model", "load_model"]


class ModelLoadError(ValueError):
    """A model file that cannot be used as a base model (one line: file and reason)."""


class HeadNotFoundError(ModelLoadError):
    """The head asked for is not one of the model's heads."""


def _backend(name):
    from .core.backend import BackendError, backend_for

    try:
        return backend_for(str(name))
    except BackendError as exc:
        raise ModelLoadError(str(exc)) from exc


def load_base_model(
    name: str | Path, *, dtype: str | torch.dtype | None = None, device: str = "cpu", head: str | None = None
) -> torch.nn.Module:
    """The base model ``name`` names: a file of any backend (a mace ``.model``, a sevenn
    ``.pth``) or a shipped name (``embedded``, ``sevennet:7net-0``, ...).

    Warning: model files are pickles; loading one runs code from it. Only load trusted files.
    ``dtype`` converts the model (float32 -> float64 recomputes its constants); ``head`` picks
    one head of a multi-head model. Raises :class:`ModelLoadError` (one line) otherwise.
    """
    backend = _backend(name)
    try:
        return backend.load(str(name), dtype=dtype, device=device, head=head)
    except ModelLoadError:
        raise
    except ValueError as exc:  # a backend's own load error: one line already
        raise ModelLoadError(str(exc)) from exc


load_model = load_base_model  # the name of the Python API since the first release
