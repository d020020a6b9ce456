"""The no-silent-regression check: validation metrics where a fine-tune ends worse than the
zero-shot base, with the best epoch before the target density for comparison."""

from __future__ import annotations

CHECKED_METRICS = ("energy_per_atom_mae", "forces_mae", "stress_mae", "magmoms_mae")  # of every head
# metric -> (name, factor, format, unit) for messages: SI-prefixed units, never "x1000"
UNITS = {
    "energy_per_atom_mae": ("energy MAE", 1000, ".2f", "meV/atom"),
    "forces_mae": ("force MAE", 1000, ".1f", "meV/Å"),
    "stress_mae": ("stress MAE", 1000, ".2f", "meV/Å³"),
    "magmoms_mae": ("magnetic-moment MAE", 1, ".4f", "μB"),
}


def checked(name: str) -> bool:
    """Whether a metric (``forces_mae``, ``<head>.forces_mae``, ...) is held to the zero-shot base."""
    return name.rpartition(".")[2] in CHECKED_METRICS


def zero_shot_check(metrics: dict, history: list[dict]) -> dict:
    """``worse_than_zero_shot``: the checked metrics of every head where the final model is worse
    than its zero-shot start, on the validation (else train) split and on test; each head is
    compared with how it started (the foundation head: the base with the fine-tune's E0s; an
    energy head: the foundation's readouts with the head's initial E0s; a moment head: its
    initial values). ``best_dense_phase``: the lowest-validation-loss epoch that did not meet
    the target density (``None`` without such epochs)."""
    splits = metrics["splits"]  # the final evaluation skips train unless output.evaluate_train
    split = "valid" if "valid" in splits else "train" if "train" in splits else next(iter(splits))
    names = [split] + (["test"] if "test" in splits and split != "test" else [])
    worse = []
    for name in names:
        tuned, zero = splits[name], metrics["base_zero_shot"][name]
        worse += [
            {"split": name, "metric": k, "final": v, "zero_shot": zero[k]}
            for k, v in tuned.items()
            if checked(k) and v is not None and zero.get(k) is not None and v > zero[k]
        ]
    dense = [row for row in history if not row.get("target_met", True) and row.get("valid_loss") is not None]
    best = min(dense, key=lambda row: row["valid_loss"]) if dense else None
    fields = ("epoch", "valid_loss", "valid_energy_mae", "valid_forces_mae", "density")
    return {
        "split": split,
        "splits": names,
        "worse_than_zero_shot": worse,
        "best_dense_phase": None if best is None else {k: best.get(k) for k in fields},
    }


def _describe(entry: dict) -> str:
    head, _, metric = entry["metric"].rpartition(".")
    name, factor, spec, unit = UNITS[metric]
    value = lambda v: f"{factor * v:{spec}} {unit}"  # noqa: E731
    return f"{f'[{head}] ' if head else ''}{name} {value(entry['final'])} vs {value(entry['zero_shot'])}"


def regression_warning(check: dict) -> str:
    """The line a run prints when :func:`zero_shot_check` found a regression."""
    worse = check["worse_than_zero_shot"]
    by_split = {}
    for entry in worse:
        by_split.setdefault(entry.get("split", check["split"]), []).append(_describe(entry))
    text = "WARNING: the final model is worse than the zero-shot base (each head against its start): " + ". ".join(
        f"{split}: {'; '.join(parts)}" for split, parts in by_split.items()
    )
    dense = check["best_dense_phase"]
    if dense:
        energy, forces = dense["valid_energy_mae"], dense["valid_forces_mae"]
        text += (
            f". Best epoch before the target density (epoch {dense['epoch']}, density {dense['density']:.3f}): "
            f"energy MAE {1000 * (energy if energy is not None else float('nan')):.2f} meV/atom, "
            f"force MAE {1000 * (forces if forces is not None else float('nan')):.1f} meV/Å"
        )
    return text
