"""A fine-tune's output directory: checks before a run, --overwrite, leftovers of killed writes,
and the resumed recipe (refused when it differs from the saved one, or accepted and recorded).

Nothing here writes before training starts: a refused run leaves the directory as it was.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from .files import TEMP_PATTERNS, check_writable, write_text_atomically
from .recipe import Recipe, RecipeError, recipe_differences, save_recipe, with_defaults
from .train.checkpoint import CHECKPOINT_DIR, find_checkpoint

RECIPE_FILE = "recipe.yaml"
RECIPE_CHANGES = "recipe_changes.json"
OUTPUT_FILES = (
    RECIPE_FILE,
    RECIPE_CHANGES,
    "adapter",
    "merged.model",
    "merged.pth",
    "merged_with_heads.model",
    "merged_multihead.model",
    "train.log",
    "metrics.json",
    "history.csv",
    "sparsity.json",
    "learning_curves.png",
    "sparsity_map.png",
    CHECKPOINT_DIR,
)
PARITY_GLOB = "parity_*.png"


def check_output(directory: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an output directory that cannot take this run, before anything is loaded or
    written: a file, not writable, non-empty (without --resume/--overwrite), no complete
    checkpoint (with --resume)."""
    if directory.exists() and not directory.is_dir():
        raise RecipeError(f"output.directory: {directory} is a file, not a directory")
    try:
        check_writable(directory, "output.directory")
    except OSError as exc:
        raise RecipeError(str(exc)) from exc
    if resume:
        if find_checkpoint(directory) is None:
            damaged = (directory / CHECKPOINT_DIR).is_dir()
            detail = f" ({directory / CHECKPOINT_DIR} is damaged or incomplete)" if damaged else ""
            raise RecipeError(
                f"--resume: {directory} holds no {'complete ' if damaged else ''}checkpoint to resume from{detail}"
            )
        return
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{directory} is not empty; use --resume to continue its run or --overwrite to replace it"
        )


def remove_temporary(directory: Path) -> None:
    """Delete what killed atomic writes left behind (``.<name>.tmp`` files, ``.<name>.tmp-*``)."""
    for pattern in TEMP_PATTERNS:
        for target in directory.glob(pattern):
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)


def clear_outputs(directory: Path) -> None:
    """Delete an earlier run's outputs and leftovers (other files in the directory stay)."""
    for name in OUTPUT_FILES:
        target = directory / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for target in directory.glob(PARITY_GLOB):
        target.unlink()
    remove_temporary(directory)


def check_resumed_recipe(directory: Path, recipe: Recipe, *, accept: bool) -> list[str]:
    """The differences between ``recipe`` and the run's saved ``recipe.yaml``; refused (with the
    list) unless ``accept``, then :func:`record_changes` records them."""
    saved_path = directory / RECIPE_FILE
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(
            f"--resume: cannot read {saved_path} ({exc}); the run's recipe is needed to check that the resumed "
            "run is the same"
        ) from exc
    changes = recipe_differences(with_defaults(saved) if isinstance(saved, dict) else saved, recipe.to_dict())
    if changes and not accept:
        raise RecipeError(
            f"--resume: the recipe differs from {saved_path}, the recipe this run started with: "
            f"{'; '.join(changes)}. Resume with the same recipe, or pass --accept-recipe-changes to continue "
            f"with the new values (recorded in {RECIPE_CHANGES})"
        )
    return changes


def record_changes(directory: Path, recipe: Recipe, changes: list[str], state) -> None:
    """Append accepted recipe changes to ``recipe_changes.json`` and save the new recipe."""
    path = directory / RECIPE_CHANGES
    records = json.loads(path.read_text()) if path.is_file() else []
    records.append({"resumed_after_epoch": state.epoch, "step": state.step, "changes": changes})
    write_text_atomically(path, json.dumps(records, indent=1))
    save_recipe(recipe, directory / RECIPE_FILE)
