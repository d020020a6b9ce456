"""Setting heads up for a fine-tune: their label keys, initial values (E0s, per-element mean
moments) and loss weights, from the recipe's ``heads:`` entries."""

from __future__ import annotations

import numpy as np

from .._compat import torch
from ..labels import Keys, MagmomKeys
from .config import HeadConfig, build_from_config


def label_keys(config: HeadConfig) -> Keys | MagmomKeys:
    """The label set of one head (:mod:`sparseft.labels`)."""
    if config.kind == "energy":
        return Keys(config.energy_key, config.forces_key, config.stress_key, config.virials_key)
    return MagmomKeys(
        config.magmom_key, config.total_key if config.kind == "magmom" else None, vector=config.kind == "vector_magmom"
    )


def label_sets(heads: list[HeadConfig], calculator_labels: str) -> list:
    """``(label set, use_calculator)`` per head, for ``data.attach_labels(extra=...)``: an
    energy head takes ASE calculator values only when ``calculator_labels`` names it; moment
    heads always do."""
    return [(label_keys(h), calculator_labels == h.name if h.kind == "energy" else True) for h in heads]


def element_means(frames, key: str, zs: list[int]) -> torch.Tensor:
    """Per-element mean of a per-atom collinear label over ``frames`` (0 for absent elements)."""
    sums, counts = np.zeros(len(zs)), np.zeros(len(zs))
    for atoms in frames.atoms:
        if key not in atoms.arrays:
            continue
        values = np.asarray(atoms.arrays[key], dtype=float)
        for j, z in enumerate(zs):
            mask = atoms.numbers == z
            sums[j] += values[mask].sum()
            counts[j] += mask.sum()
    return torch.tensor(np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0))


def build_heads(configs: list[HeadConfig], base, train_frames, resolve_e0s) -> list:
    """Heads built on the unwrapped ``base`` and initialised from the training data: energy
    heads get their E0s (``resolve_e0s(option, keys)`` -> {Z: eV}), collinear moment heads
    start at the per-element mean moment."""
    zs = [int(z) for z in base.atomic_numbers]
    heads = []
    for config in configs:
        head = build_from_config(config, base)
        if config.kind == "energy":
            e0s = resolve_e0s(config.E0s, label_keys(config))
            head.set_e0s(torch.tensor([e0s[z] for z in zs]))
        elif config.kind == "magmom":
            head.initialize(element_means(train_frames, config.magmom_key, zs))
        heads.append(head)
    return heads


def task_weights(configs: list[HeadConfig], train) -> dict:
    """Loss weight per task (``train`` is the recipe's train section, for the foundation head)."""
    weights = {"energy": train.energy_weight, "forces": train.forces_weight, "stress": train.stress_weight}
    for h in configs:
        if h.kind == "energy":
            weights.update(
                {
                    f"{h.name}.energy": h.energy_weight,
                    f"{h.name}.forces": h.forces_weight,
                    f"{h.name}.stress": h.stress_weight,
                }
            )
        else:
            weights[f"{h.name}.magmoms"] = h.magmoms_weight
    return weights


def differentiated_heads(weights: dict, stress_counts: dict, force_counts: dict) -> list:
    """Energy heads (``None``: the foundation's) whose forces or stress train, i.e. have a
    positive weight and training labels; the others need no backward pass in a training step.
    ``*_counts`` map head -> number of training frames with that label."""

    def trained(head, quantity, counts):
        task = quantity if head is None else f"{head}.{quantity}"
        return weights.get(task, 0.0) > 0 and counts.get(head, 0) > 0

    return [
        head for head in force_counts if trained(head, "forces", force_counts) or trained(head, "stress", stress_counts)
    ]


@torch.no_grad()
def standardize_inputs(headed, dataset, batch_size: int) -> None:
    """Set every moment head's input scaling from the trunk's features on ``dataset``
    (``headed``: a :class:`~sparseft.heads.HeadedModel`)."""
    from ..core.graph import loader, to_device
    from .features import split_features

    heads = [h for h in headed.output_heads.values() if hasattr(h, "inputs")]
    if not heads or not dataset:
        return
    device = next(headed.parameters()).device
    scalars, vectors = [], []
    for batch in loader(dataset, batch_size, shuffle=False):
        batch = to_device(batch, device)
        with torch.enable_grad():  # mace's forward asks for position gradients
            out = headed.model(batch, training=False, compute_force=False)
        features = split_features(out["node_feats"].detach(), headed.irreps_list)
        scalars.append(features.scalars)
        if features.vectors is not None:
            vectors.append(features.vectors)
    s = torch.cat(scalars)
    rms = torch.cat(vectors).pow(2).sum(-1).mean(0).sqrt() if vectors else None
    for head in heads:
        head.inputs.set(s.mean(0), s.std(0) if s.shape[0] > 1 else torch.ones_like(s[0]), rms)
