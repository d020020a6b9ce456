"""The evaluation step: every split, zero-shot and fine-tuned, per config_type."""

from __future__ import annotations

from ase.data import chemical_symbols

from ..blocks import blocks as catalogue
from ..e0s import current_e0s
from ..heads import split_heads
from ..model import reachable
from ..recipe import Recipe
from .data import training_elements
from .report import density_summary, sparsity_rows
from .setup import Setup, zero_shot_model


def evaluate(recipe: Recipe, setup: Setup, state, log, quiet: bool = False):
    """Evaluation step: metrics of every split (train only with ``output.evaluate_train``) for the
    fine-tune and the zero-shot base, per config_type too, parity data, the sparsity rows; a
    progress bar on a terminal, else a progress line every ``output.progress_seconds``."""
    from ..evaluation import final_metrics
    from ..train_log import Progress

    def progress(total, what, unit=""):
        return Progress(total, what, unit=unit, log=log, seconds=recipe.output.progress_seconds, quiet=quiet)

    adapted, heads = split_heads(setup.model)
    metrics, parity_data = final_metrics(
        setup.model,
        zero_shot_model(setup),
        setup.datasets,
        setup.splits,
        batch_size=recipe.train.batch_size,
        compute_stress=setup.has_stress,
        include_train=recipe.output.evaluate_train,
        log=log,
        progress=progress,
    )
    rows = sparsity_rows(adapted)
    density = adapted.density()
    metrics.update(
        {
            "trainable_parameters": setup.model.num_trainable(),
            "head_parameters": sum(p.numel() for h in heads.values() for p in h.parameters() if p.requires_grad),
            "heads": [h.spec() for h in heads.values()],
            "loss_weights": setup.weights,
            "changed_parameters": density["changed"],
            "selected_parameters": density["selected"],
            "base_parameters": sum(p.numel() for p in setup.base.parameters()),
            "reachable_parameters": sum(b.size for b in reachable(catalogue(setup.base), adapted.train_elements)),
            "training_elements": [chemical_symbols[z] for z in training_elements(setup.splits)],
            "density_of": "selected weights the training data reaches (shared blocks and the per-element blocks "
            "of the training elements, those of the replay structures included)",
            "added_elements": [chemical_symbols[z] for z in (adapted.elements.added if adapted.elements else ())],
            "density": density["overall"],
            "density_summary": density_summary(rows),
            "E0s": {chemical_symbols[z]: v for z, v in current_e0s(adapted.model).items()},
            "epochs": state.epoch,
            "steps": state.step,
            "best_epoch": state.best_epoch,
        }
    )
    return metrics, parity_data, rows
