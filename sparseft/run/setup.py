"""The set-up step: base, splits, E0s, the adapted model with its heads, datasets, loss weights."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ase.data import chemical_symbols

from .._compat import torch
from ..data import label_counts, to_atomic_data
from ..e0s import resolve_e0s, set_e0s
from ..elements import apply_spec, spec_for
from ..fingerprint import fingerprint
from ..heads import HeadedModel
from ..heads import setup as head_setup
from ..isolated import ISOLATED_KEY, e0s_option
from ..model import wrap_extended
from ..predict import model_dtype
from ..recipe import Recipe
from .base import added_elements, load_base
from .data import foundation_keys, load_splits, training_elements, with_replay


@dataclass(frozen=True)
class Setup:
    """What the training step needs: the model, its datasets and loss weights."""

    base: torch.nn.Module
    splits: dict
    e0s: dict
    model: torch.nn.Module  # AdaptedModel, or a HeadedModel around it
    datasets: dict
    initial_heads: list
    weights: dict
    has_stress: bool
    derivative_heads: list


def set_up(recipe: Recipe, log, device: str | None = None) -> Setup:
    """Data step: the base model, validated splits, E0s, the adapted model with its heads, datasets."""
    base = load_base(recipe, device)
    added = added_elements(recipe, base)
    splits = load_splits(recipe, [int(z) for z in base.atomic_numbers] + added, log=log, cutoff=float(base.r_max))
    keys = foundation_keys(recipe)
    adapted, e0s = _adapt(recipe, base, splits, added, log)
    base = adapted.base  # with its element table extended when elements were added
    log(
        f"base: {recipe.base.model} ({type(base).__name__}, {model_dtype(base)}); "
        + (f"added {' '.join(chemical_symbols[z] for z in added)}; " if added else "")
        + ", ".join(f"{k}: {len(v.atoms)} frames" for k, v in splits.items())
    )
    set_e0s(adapted.model, e0s)
    heads = head_setup.build_heads(
        recipe.heads,
        adapted.base,
        splits["train"],
        lambda option, head_keys: resolve_e0s(option, base, splits["train"], head_keys, new=added, log=log),
    )
    model = HeadedModel(adapted, heads) if heads else adapted
    head_keys = [(h.name, head_setup.label_keys(h)) for h in recipe.heads]
    datasets = {
        k: to_atomic_data(v, model, keys, heads=head_keys, config_type_weights=recipe.data.config_type_weights)
        for k, v in splits.items()
    }
    if heads:
        head_setup.standardize_inputs(model, datasets["train"], recipe.train.batch_size)
    initial_heads = copy.deepcopy(heads)  # the zero-shot baseline of each head
    energy_counts = {
        None: label_counts(splits["train"], keys),
        **{
            h.name: label_counts(splits["train"], head_setup.label_keys(h))
            for h in recipe.heads
            if h.property == "energy"
        },
    }
    weights = head_setup.task_weights(recipe.heads, recipe.train)
    stress_tasks = ["stress" if head is None else f"{head}.stress" for head in energy_counts]
    # stress only when some task with stress labels trains on them
    has_stress = any(
        weights[task] > 0 and counts["stress"] > 0 for task, counts in zip(stress_tasks, energy_counts.values())
    )
    if not has_stress:
        weights.update({task: 0.0 for task in stress_tasks})
    log(head_setup.routing_summary(head_setup.label_owners(keys, recipe.heads), splits["train"], weights))
    derivative_heads = head_setup.differentiated_heads(
        weights, {h: c["stress"] for h, c in energy_counts.items()}, {h: c["forces"] for h, c in energy_counts.items()}
    )
    return Setup(base, splits, e0s, model, datasets, initial_heads, weights, has_stress, derivative_heads)


def _adapt(recipe: Recipe, base, splits: dict, added: list[int], log):
    """The adapted model and the E0s. The element table is extended first; the E0s come from the
    new data alone; the replay frames (chosen and labelled by the extended base) then join the
    training split, and only then are the adapters attached: per-element weights of elements in
    neither the training nor the replay structures get no gradient, so every adapter leaves them
    out (``train_elements``)."""
    spec = spec_for(base, added, init=recipe.base.element_init) if added else None
    extended = apply_spec(base, spec) if spec is not None else base
    keys = foundation_keys(recipe)
    e0_option = e0s_option(splits.pop(ISOLATED_KEY), keys.energy, recipe.data.E0s, log)
    e0s = resolve_e0s(e0_option, extended, splits["train"], keys, new=added, log=log)
    if recipe.data.replay is not None:
        splits["train"] = with_replay(recipe, splits["train"], extended, e0s, log)
    adapted = wrap_extended(
        extended,
        recipe.adapters,
        fingerprint(base),
        spec,
        copy_model=spec is None,  # apply_spec made a copy already
        allow_empty=bool(recipe.heads),
        train_elements=training_elements(splits),
    )
    return adapted, e0s


def zero_shot_model(setup: Setup) -> torch.nn.Module:
    """The base before training with the same E0s as the fine-tune, and each head as it started
    (an energy head = the foundation with its own E0s; a moment head = per-element means)."""
    zero_shot = copy.deepcopy(setup.base)
    set_e0s(zero_shot, setup.e0s)
    return HeadedModel(zero_shot, setup.initial_heads) if setup.initial_heads else zero_shot
