"""Load a mace-torch ``.model`` file (or the embedded mini-foundation) as a base model."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..._compat import default_dtype, torch
from ...blocks import UnsupportedLayoutError, blocks
from ...core.facts import model_heads
from ...loading import TRUST_WARNING, HeadNotFoundError, ModelLoadError
from ...precision import parse_dtype
from ...trust import UntrustedModelWarning
from .precision import to_dtype

_WARNED: set[str] = set()


def _warn_untrusted(path: Path) -> None:
    key = str(path.resolve())
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(f"{path}: {TRUST_WARNING}", UntrustedModelWarning, stacklevel=3)


def load_base_model(
    name: str | Path, *, dtype: str | torch.dtype | None = None, device: str = "cpu", head: str | None = None
) -> torch.nn.Module:
    """``load_model(name)``, or the shipped mini-foundation when ``name`` is ``"embedded"``."""
    if str(name) == "embedded":
        from ...embedded import load_foundation

        if head not in (None, "Default"):
            raise HeadNotFoundError(f"embedded: head {head!r} not found; the model's heads are ['Default']")
        return load_foundation(dtype=dtype, device=device)
    return load_model(name, dtype=dtype, device=device, head=head)


def load_model(
    path: str | Path, *, dtype: str | torch.dtype | None = None, device: str = "cpu", head: str | None = None
) -> torch.nn.Module:
    """Read a mace-torch ``.model`` file (``MACE`` or ``ScaleShiftMACE``), or a sparseft
    ``merged_with_heads.model`` (a :class:`sparseft.heads.HeadedModel`).

    Warning: the file is a pickle; loading it runs code from it. Only load trusted files.

    ``dtype`` ("float32"/"float64") converts the model (float32 -> float64 rebuilds it so that
    its Clebsch-Gordan constants are float64 too, see :mod:`sparseft.backends.mace.precision`); ``head`` picks one head of a
    multi-head model and returns a single-head model holding only that head (what
    mace-torch itself does before fine-tuning). Raises :class:`ModelLoadError` with the
    file name and the reason for a missing file, a file that is not a MACE model, or a
    parameter layout sparseft does not know.
    """
    from mace.modules.models import MACE

    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such file")
    _warn_untrusted(path)
    try:
        obj = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a model file"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: not a readable torch model file ({reason})") from exc
    if isinstance(obj, dict):
        raise ModelLoadError(f"{path}: holds a dict (a state dict or checkpoint), not a MACE model object")
    from ...heads.forward import HeadedModel
    from ...heads_file import unwrap

    obj = unwrap(obj)  # merged_with_heads.model: a wrapper that MACE tools refuse
    if isinstance(obj, HeadedModel):  # a sparseft fine-tune's merged_with_heads.model
        names = list(obj.output_heads)
        if head is not None and head not in names and head not in model_heads(obj.model):
            raise HeadNotFoundError(
                f"{path}: head {head!r} not found; the model's heads are {model_heads(obj.model) + names}"
            )
        obj.model = _prepare_mace(
            obj.model, path, dtype=dtype, device=device, head=head if head in model_heads(obj.model) else None
        )
        obj.output_heads.to(device=device, dtype=next(obj.model.parameters()).dtype)
        return obj.eval()
    if not isinstance(obj, MACE):
        raise ModelLoadError(f"{path}: holds a {type(obj).__name__}, not a mace-torch MACE/ScaleShiftMACE model")
    return _prepare_mace(obj, path, dtype=dtype, device=device, head=head)


def _prepare_mace(model, path, *, dtype, device, head):
    """Head extraction, dtype conversion, device, layout check of a loaded mace model."""
    heads = model_heads(model)
    if head is not None:
        if head not in heads:
            raise HeadNotFoundError(f"{path}: head {head!r} not found; the model's heads are {heads}")
        if len(heads) > 1:
            from mace.tools.scripts_utils import remove_pt_head

            with default_dtype(next(model.parameters()).dtype):  # mace rebuilds the model in the default dtype
                model = remove_pt_head(model, head)
    target = parse_dtype(dtype)
    if target is not None:
        model = to_dtype(model, target)
    model = model.to(device)
    try:
        blocks(model)
    except UnsupportedLayoutError as exc:
        raise ModelLoadError(f"{path}: unsupported layout: {exc}") from exc
    model.eval()
    return model
