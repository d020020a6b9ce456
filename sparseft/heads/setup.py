"""Setting heads up for a fine-tune: their label keys, initial values (E0s, per-element mean
moments) and loss weights, from the recipe's ``heads:`` entries."""

from __future__ import annotations

import dataclasses

import numpy as np

from .._compat import torch
from ..labels import DataError, Keys, MagmomKeys
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


_STORES = {
    "energy": "info",
    "stress": "info",
    "virials": "info",
    "total": "info",
    "forces": "arrays",
    "magmoms": "arrays",
}
_RECIPE_KEYS = {"magmoms": "magmom_key"}  # the recipe key of each label (default: "<label>_key")
_TRAINED = ("energy", "forces", "stress", "magmoms")  # labels with a loss term


def label_owners(data_keys: Keys, heads: list[HeadConfig]) -> list[tuple[str, str, str, object]]:
    """``(who, recipe path, task prefix, label set)`` of the foundation head and each head."""
    owners = [("the foundation head", "data", "", data_keys)]
    return owners + [(f"head {h.name}", f"heads[{i}]", f"{h.name}.", label_keys(h)) for i, h in enumerate(heads)]


def _reads(label_set) -> list[tuple[str, str, str]]:
    """``(label, store, key)`` of each label a label set reads (virials only where they become stress)."""
    out = []
    for f in dataclasses.fields(label_set):
        key = getattr(label_set, f.name)
        if f.name in _STORES and key is not None and (f.name != "virials" or label_set.stress is not None):
            out.append((f.name, _STORES[f.name], key))
    return out


def check_routing(raw, labelled, owners: list) -> None:
    """Refuse a label that would train two heads: a key that several owners (:func:`label_owners`)
    read and a frame of ``labelled`` carries (from the file ``raw`` was read from, an ASE
    calculator or virials). Each head trains on its own labels alone, as in mace's multi-head
    fine-tuning, where a frame belongs to one head."""
    readers: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for who, path, _, label_set in owners:
        for label, store, key in _reads(label_set):
            entry = (who, f"{path}.{_RECIPE_KEYS.get(label, label + '_key')}")
            if all(w != who for w, _ in readers.get((store, key), [])):
                readers.setdefault((store, key), []).append(entry)
    shared = {k: v for k, v in readers.items() if len(v) > 1}
    for i, original, atoms in zip(labelled.indices, raw.atoms, labelled.atoms):
        for (store, key), (first, second, *_) in shared.items():
            if key not in getattr(atoms, store):
                continue
            source = "" if key in getattr(original, store) else " (not in the file: from the ASE calculator or virials)"
            raise DataError(
                f"{labelled.path}: frame {i}: {key}{source} would train both {first[0]} ({first[1]}) and "
                f"{second[0]} ({second[1]}); a label trains one head: set one of the two keys to null or to "
                "another key"
            )


def routing_summary(owners: list, frames, weights: dict) -> str:
    """The log line that says which labels (key, training frames) train each head."""
    parts = []
    for who, _, prefix, label_set in owners:
        counts = label_set.count(frames.atoms)
        labels = [
            f"{label} <- {key} ({counts.get(label, 0)} frames"
            + (", weight 0: not trained)" if weights.get(prefix + label, 1.0) == 0 else ")")
            for label, _, key in _reads(label_set)
            if label in _TRAINED and counts.get(label, 0) > 0
        ]
        name = "foundation head" if prefix == "" else who[len("head ") :]
        parts.append(f"{name}: {', '.join(labels) or 'no labels'}")
    return "labels training each head (key, training frames): " + "; ".join(parts)


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
