"""``sparseft finetune``: one recipe -> adapter, merged model, metrics, history and plots, in
named steps, one module each: base, data, setup, output (checks), training, evaluate, report.
Each step returns what it made; none changes its arguments."""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

from ..outputs import clear_outputs
from ..recipe import Recipe
from ..train import distributed as ddp
from ..train.checkpoint import has_checkpoint
from ..zero_shot import regression_warning, zero_shot_check
from .base import device_name
from .evaluate import evaluate
from .output import check_output_once
from .report import final_summary, write_outputs
from .setup import set_up
from .training import Interrupted, train

__all__ = ["Interrupted", "run"]


def run(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    log=None,
    accept_recipe_changes: bool = False,
) -> dict:
    """Run one fine-tune; returns the metrics dict that is also written to ``metrics.json``.

    Nothing is written before training starts, and a run that fails before its first checkpoint
    leaves nothing behind. ``resume`` refuses a recipe that differs from the saved one unless
    ``accept_recipe_changes`` (the differences are then recorded in ``recipe_changes.json``).
    Everything ``log`` receives also goes to ``train.log`` in the output directory (from the
    first checkpoint on: lines logged before it are written then).

    Under ``torchrun`` (``WORLD_SIZE > 1``) this process is one rank of a data-parallel run
    (:mod:`sparseft.train.distributed`): rank 0 alone logs, writes outputs and checkpoints and
    returns the metrics, the other ranks return ``{}``."""
    from ..train_log import TrainLog

    dist, device = ddp.init_from_env(device_name(recipe.base.device))
    main = dist is None or dist.is_main
    results = log or print  # the final results: shown with quiet too
    if log is None:
        log = (lambda _msg: None) if quiet else print
    out_dir = Path(recipe.output.directory)
    log = TrainLog(out_dir / "train.log", log, results=results) if main else _Silent()
    try:
        return _run(
            recipe,
            out_dir,
            resume=resume,
            overwrite=overwrite,
            quiet=quiet,
            log=log,
            accept_recipe_changes=accept_recipe_changes,
            dist=dist,
            device=device,
        )
    except Exception as exc:
        log.write(f"stopped: {type(exc).__name__}: {exc}")
        raise
    finally:
        log.close()
        if dist is not None:
            ddp.shutdown()


class _Silent:
    """The log of a rank other than 0: says nothing, writes nothing."""

    def __call__(self, message: str) -> None:
        pass

    def write(self, message: str) -> None:
        pass

    def result(self, message: str) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _run(
    recipe: Recipe,
    out_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    log,
    accept_recipe_changes: bool,
    dist=None,
    device=None,
) -> dict:
    """The steps of :func:`run`: checks, set-up, training, evaluation, report."""
    main = dist is None or dist.is_main
    started = time.perf_counter()
    changes = check_output_once(out_dir, recipe, dist, resume=resume, overwrite=overwrite, accept=accept_recipe_changes)
    existed = out_dir.exists()
    setup = set_up(recipe, log, device)
    try:
        trained = train(recipe, setup, out_dir, resume=resume, changes=changes, quiet=quiet, log=log, dist=dist)
    except BaseException:
        if main and not resume and not has_checkpoint(out_dir):  # never started: leave nothing behind
            shutil.rmtree(out_dir, ignore_errors=True) if not existed else clear_outputs(out_dir)
        raise
    if not main:
        return {}
    state = trained.state
    metrics, parity_data, rows = evaluate(recipe, setup, state, log, quiet=quiet)
    metrics["wall_time_s"] = time.perf_counter() - started
    metrics["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics["zero_shot_check"] = zero_shot_check(metrics, state.history)
    write_outputs(recipe, setup, trained, out_dir, metrics, parity_data, rows, log)
    log.result(final_summary(metrics))  # results: printed with --quiet too
    if metrics["zero_shot_check"]["worse_than_zero_shot"]:
        log.result(regression_warning(metrics["zero_shot_check"]))
    return metrics
