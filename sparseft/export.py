"""``sparseft export`` and a fine-tune's head files: energy heads as the model family's own files.

The family's backend does the work (mace: single-head models and native multi-head models;
sevenn: a single-head checkpoint per energy head).
"""

from __future__ import annotations

from ._compat import torch


class ExportError(ValueError):
    """A model or head that has no form in its family's files (one line: what and why)."""


def energy_heads(headed) -> dict:
    """The energy heads of a model with sparseft heads (``{}`` for a plain model)."""
    return {n: h for n, h in (getattr(headed, "output_heads", None) or {}).items() if h.property == "energy"}


def export(model, head: str | None) -> torch.nn.Module:
    """What ``sparseft export`` writes: ``head`` as a plain model of the family, or (no ``head``)
    the family's multi-head form of every energy head, where it has one."""
    from .core.backend import backend_of

    return backend_of(model).export_head(model, head)


def write_head_models(headed, out_dir, log=print) -> None:
    """A fine-tune's head files: ``merged_with_heads.model`` (every head, for sparseft.Calculator;
    the family's tools refuse it) and, with energy heads, the family's own multi-head file where
    it has one (mace: ``merged_multihead.model``)."""
    from .core.backend import backend_of
    from .files import save_torch, write_file_atomically
    from .heads_file import wrap_for_file

    wrapped = wrap_for_file(headed)
    write_file_atomically(out_dir / "merged_with_heads.model", lambda tmp: save_torch(wrapped, tmp))
    if energy_heads(headed):
        backend_of(headed).write_native_heads(headed, out_dir, log)
