"""The training step: the trainer, checkpoints, resume and Ctrl-C."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..outputs import RECIPE_CHANGES, clear_outputs, record_changes, remove_temporary
from ..recipe import Recipe, save_recipe
from ..train import distributed as ddp
from ..train.checkpoint import has_checkpoint, load_checkpoint, remove_stale, save_checkpoint
from ..train.trainer import Trainer
from .setup import Setup


@dataclass(frozen=True)
class Trained:
    """What the training step gives: the final training state and the epoch (fractional) at
    which the sparse support was fixed, if it was."""

    state: object
    support_fixed_epoch: float | None


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint."""


def train(
    recipe: Recipe, setup: Setup, out_dir: Path, *, resume: bool, changes: list, quiet: bool, log, dist=None
) -> Trained:
    """Training step: the trainer, resumed from the checkpoint when asked; checkpoints every epoch
    (the first one also saves ``recipe.yaml``: from then on the run exists); in a data-parallel
    run rank 0 alone writes."""
    main = dist is None or dist.is_main
    model = setup.model
    device = next(model.parameters()).device
    trainer = Trainer(
        model,
        setup.datasets["train"],
        setup.datasets.get("valid", []),
        recipe.train,
        device=device,
        compute_stress=setup.has_stress,
        log=log,
        progress=main and not quiet and sys.stderr.isatty(),
        task_weights=setup.weights,
        derivative_heads=setup.derivative_heads,
        frame_names=setup.splits["train"].names(),
        progress_seconds=None if quiet or not main or sys.stderr.isatty() else recipe.output.progress_seconds,
        dist=dist,
    )
    fixed_epoch = None if trainer.fix_at_step is None else trainer.fix_at_step / trainer.steps_per_epoch
    state = _start(out_dir, trainer, recipe, resume=resume, changes=changes, log=log, dist=dist)
    if resume:
        log.start()
    if dist is not None:
        log(
            f"data-parallel: {dist.world_size} ranks ({ddp.backend_for(device)}), global batch {recipe.train.batch_size}"
        )

    def checkpoint(s):
        if not main:
            return
        if not has_checkpoint(out_dir):  # the run's first checkpoint
            out_dir.mkdir(parents=True, exist_ok=True)
            save_recipe(recipe, out_dir / "recipe.yaml")
            log.start()
        save_checkpoint(out_dir, trainer, s)

    def on_interrupt(s):
        checkpoint(s)
        raise Interrupted(
            f"interrupted at step {s.step}; checkpoint written to {out_dir / 'checkpoint'}; continue with --resume"
        )

    state = trainer.fit(state, on_epoch_end=checkpoint, on_interrupt=on_interrupt)
    if not main:
        return Trained(state, fixed_epoch)
    trainer.load_best()
    model.eval()
    return Trained(state, fixed_epoch)


def _start(out_dir: Path, trainer: Trainer, recipe: Recipe, *, resume: bool, changes: list, log, dist=None):
    """The state training starts from: the checkpoint (--resume: accepted recipe changes are
    recorded, leftovers of killed writes deleted), or a fresh one (--overwrite: the earlier
    run's outputs are deleted now, once the model and data are known to be good). Every rank
    reads the checkpoint; rank 0 alone deletes or records."""
    main = dist is None or dist.is_main
    if not resume:
        if main and out_dir.exists():
            clear_outputs(out_dir)
        return None
    state = load_checkpoint(out_dir, trainer)
    ddp.barrier(dist)  # every rank has read the checkpoint before rank 0 tidies the folder
    if not main:
        return state
    remove_stale(out_dir, count=recipe.train.keep_checkpoints)
    remove_temporary(out_dir)
    if changes:
        state.done = trainer.finished(state)  # e.g. more epochs for a finished run
        record_changes(out_dir, recipe, changes, state)
        log(f"recipe changes accepted and recorded in {out_dir / RECIPE_CHANGES}: {'; '.join(changes)}")
    log(f"resuming after epoch {state.epoch} (step {state.step})" + (f" on {dist.world_size} ranks" if dist else ""))
    return state
