"""The output-folder step: checks before anything is written (rank 0 alone probes the folder)."""

from __future__ import annotations

from pathlib import Path

from ..outputs import check_output, check_resumed_recipe
from ..recipe import Recipe
from ..train import distributed as ddp


def check_output_once(out_dir: Path, recipe: Recipe, dist, *, resume: bool, overwrite: bool, accept: bool) -> list:
    """The output folder and resumed-recipe checks, on rank 0 alone (they probe the folder by
    writing); every rank raises the same error. Returns the accepted recipe changes."""
    changes, error = [], None
    if dist is None or dist.is_main:
        try:
            check_output(out_dir, resume=resume, overwrite=overwrite)
            changes = check_resumed_recipe(out_dir, recipe, accept=accept) if resume else []
        except Exception as exc:
            if dist is None:
                raise
            error = exc
    if dist is not None:
        kind, message, changes = ddp.broadcast_from_main(
            dist, (type(error) if error else None, str(error) if error else None, changes)
        )
        if error is not None:
            raise error
        if kind is not None:
            raise kind(message)
    return changes
