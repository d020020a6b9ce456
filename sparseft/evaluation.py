"""The final evaluation of a fine-tune: every split's batches built once and run through the
fine-tuned model and its zero-shot baseline, with errors per split and per ``config_type``
(mace's table), parity values, and a progress line per split."""

from __future__ import annotations

import time

from ._compat import torch
from .train.losses import ErrorAccumulator, views

PARITY_METRICS = ("energy_per_atom", "forces", "stress", "magmoms")  # quantities with parity plots (any head)


def config_type_groups(frames) -> dict[str, list[int]]:
    """Frame indices per ``info["config_type"]`` (mace's default: ``Default``), in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, atoms in enumerate(frames.atoms):
        groups.setdefault(str(atoms.info.get("config_type", "Default")), []).append(i)
    return groups


def _batches(dataset: list, groups: dict, batch_size: int, device) -> list[tuple[str, dict]]:
    from .core.graph import loader, to_device

    out = []
    for config_type, idx in groups.items():
        for batch in loader([dataset[i] for i in idx], batch_size, shuffle=False):
            out.append((config_type, to_device(batch, device)))
    return out


class _Collector:
    """Errors overall and per config_type, and labelled parity values, for one model on one split."""

    def __init__(self):
        self.overall = ErrorAccumulator()
        self.by_type: dict[str, ErrorAccumulator] = {}
        self.values: dict[str, tuple[list, list, list]] = {}  # metric -> (reference, predicted, per-atom E0 part)

    def add(self, config_type: str, batch: dict, out: dict, e0_per_atom: dict) -> None:
        self.overall.add(batch, out)
        self.by_type.setdefault(config_type, ErrorAccumulator()).add(batch, out)
        for v in views(batch, out):
            if v.metric.rpartition(".")[2] not in PARITY_METRICS:
                continue
            keep = v.mask > 0
            refs, preds, e0 = self.values.setdefault(v.metric, ([], [], []))
            refs.append(v.ref[keep].detach().double().cpu().reshape(-1))
            preds.append(v.pred[keep].detach().double().cpu().reshape(-1))
            prefix = v.metric[: -len("energy_per_atom")]
            if v.metric.endswith("energy_per_atom") and prefix in e0_per_atom:
                e0.append(e0_per_atom[prefix][keep.reshape(-1)].detach().double().cpu())

    def parity(self) -> dict:
        return {k: tuple(torch.cat(x).numpy() if x else None for x in v) for k, v in self.values.items()}


def _e0_per_atom(batch: dict, e0s) -> torch.Tensor:
    """Mean E0 per atom of each structure (for energies relative to E0s)."""
    node = batch["node_attrs"].double() @ e0s.to(batch["node_attrs"].device)
    n = (batch["ptr"][1:] - batch["ptr"][:-1]).double()
    return torch.zeros(len(n), dtype=torch.float64, device=node.device).index_add_(0, batch["batch"], node) / n


def _no_progress(total: int, what: str, unit: str = ""):
    from .train_log import Progress

    return Progress(total, what, unit=unit, quiet=True)


def evaluate(
    models: dict,
    datasets: dict,
    frames: dict,
    *,
    batch_size: int,
    compute_stress: bool,
    e0s,
    log=print,
    progress=_no_progress,
) -> dict:
    """``{model name: {split: _Collector}}`` for each model in ``models`` on each split of
    ``datasets`` (batches shared between the models: only the weights differ). ``e0s`` maps a
    metric prefix (``""`` for the foundation head, ``"<head>."``) to its per-element E0 tensor.
    ``progress(total, what, unit)`` makes the :class:`~sparseft.train_log.Progress` of a split."""
    device = next(next(iter(models.values())).parameters()).device
    results = {m: {} for m in models}
    for split, dataset in datasets.items():
        started = time.perf_counter()
        batches = _batches(dataset, config_type_groups(frames[split]), batch_size, device)
        with progress(len(batches) * len(models), f"evaluating {split}", "batches") as bar:
            for m, model in models.items():
                collector = results[m][split] = _Collector()
                for config_type, batch in batches:
                    out = model(dict(batch), training=False, compute_force=True, compute_stress=compute_stress)
                    collector.add(config_type, batch, out, {p: _e0_per_atom(batch, e) for p, e in e0s.items()})
                    del out
                    bar.update()
        log(
            f"evaluated {split}: {len(dataset)} frames, {len(batches)} batches, {len(models)} models, "
            f"{time.perf_counter() - started:.1f} s"
        )
    return results


def config_type_table(by_split: dict) -> str:
    """mace's per-config_type error table: energy and force errors per split and config_type."""
    fmt = lambda v, k=1000.0, spec=".1f": "-" if v is None else f"{v * k:{spec}}"  # noqa: E731
    lines = [
        f"{'split':8s} {'config_type':20s} {'E MAE':>8s} {'E RMSE':>8s} {'F MAE':>8s} {'F RMSE':>8s} {'rel F RMSE':>10s}",
        f"{'':8s} {'':20s} {'meV/atom':>8s} {'meV/atom':>8s} {'meV/Å':>8s} {'meV/Å':>8s} {'%':>10s}",
    ]
    for split, types in by_split.items():
        for config_type, m in types.items():
            lines.append(
                f"{split:8s} {config_type[:20]:20s} {fmt(m.get('energy_per_atom_mae')):>8s} "
                f"{fmt(m.get('energy_per_atom_rmse')):>8s} {fmt(m.get('forces_mae')):>8s} "
                f"{fmt(m.get('forces_rmse')):>8s} {fmt(m.get('forces_rel_rmse_percent'), 1.0, '.2f'):>10s}"
            )
    return "\n".join(lines)


def e0_tensors(model) -> dict:
    """Per-element E0s of the foundation head (prefix ``""``) and of each energy head of
    ``model`` (an adapted or plain base model, or a HeadedModel around one)."""
    from .core.backend import plain
    from .core.facts import e0s_values
    from .heads import split_heads

    trunk, heads = split_heads(model)
    out = {"": e0s_values(plain(trunk)).detach().double().cpu()}
    for name, head in heads.items():
        if hasattr(head, "atomic_energies"):
            out[f"{name}."] = head.atomic_energies.detach().double().cpu()
    return out


def evaluated_splits(datasets: dict, include_train: bool, log=print) -> list[str]:
    """Splits of the final evaluation: all but train unless ``include_train`` (or train is the only one)."""
    names = [k for k in datasets if include_train or k != "train"]
    if not names:
        log("final evaluation: no valid/test split, so the train split is evaluated")
        names = ["train"]
    elif "train" not in names:
        log("final evaluation skips the train split (output.evaluate_train: true includes it)")
    return names


def final_metrics(
    adapted,
    zero_shot,
    datasets: dict,
    frames: dict,
    *,
    batch_size: int,
    compute_stress: bool,
    include_train: bool,
    log=print,
    progress=_no_progress,
) -> tuple[dict, dict]:
    """``({"splits", "base_zero_shot", "config_types"}, parity)`` of a fine-tune; ``parity`` maps a
    metric to ``(split, (reference, predicted), zero-shot predicted, per-atom E0 part)`` from the
    first split (test, evaluate-only sets, valid, train) that has its labels. ``progress``: as
    for :func:`evaluate`."""
    names = evaluated_splits(datasets, include_train, log)
    log(
        "final evaluation: "
        + ", ".join(f"{k} {len(datasets[k])} frames" for k in names)
        + " (the fine-tuned model and the zero-shot base)"
    )
    results = evaluate(
        {"tuned": adapted, "zero": zero_shot},
        {k: datasets[k] for k in names},
        {k: frames[k] for k in names},
        batch_size=batch_size,
        compute_stress=compute_stress,
        e0s=e0_tensors(adapted),
        log=log,
        progress=progress,
    )
    tuned, zero = results["tuned"], results["zero"]
    metrics = {
        "splits": {k: tuned[k].overall.metrics() for k in names},
        "base_zero_shot": {k: zero[k].overall.metrics() for k in names},
        "config_types": {k: {t: a.metrics() for t, a in tuned[k].by_type.items()} for k in names},
    }
    parity = {}
    for name in _parity_order(names):
        tuned_values, zero_values = tuned[name].parity(), zero[name].parity()
        for metric, (ref, pred, e0) in tuned_values.items():
            parity.setdefault(metric, (name, (ref, pred), zero_values.get(metric, (None, None, None))[1], e0))
    return metrics, parity


def _parity_order(names: list[str]) -> list[str]:
    """Splits in the order their values are preferred for parity plots: test, evaluate-only sets,
    valid, train (a quantity is plotted from the first split that has its labels)."""
    first, last = ["test"], ["valid", "train"]
    return (
        [k for k in first if k in names] + [k for k in names if k not in first + last] + [k for k in last if k in names]
    )
