"""The no-silent-regression check: validation metrics where a fine-tune ends worse than the
zero-shot base, with the best epoch before the target density for comparison."""

from __future__ import annotations

CHECKED_METRICS = ("energy_per_atom_mae", "forces_mae", "stress_mae")


def zero_shot_check(metrics: dict, history: list[dict]) -> dict:
    """``worse_than_zero_shot``: the checked validation (else train) metrics where the final model
    is worse than the zero-shot base; ``best_dense_phase``: the lowest-validation-loss epoch that
    did not meet the target density (``None`` without such epochs)."""
    splits = metrics["splits"]  # the final evaluation skips train unless output.evaluate_train
    split = "valid" if "valid" in splits else "train" if "train" in splits else next(iter(splits))
    tuned, zero = metrics["splits"][split], metrics["base_zero_shot"][split]
    worse = [
        {"metric": k, "final": tuned[k], "zero_shot": zero[k]}
        for k in CHECKED_METRICS
        if tuned.get(k) is not None and zero.get(k) is not None and tuned[k] > zero[k]
    ]
    dense = [row for row in history if not row.get("target_met", True) and row.get("valid_loss") is not None]
    best = min(dense, key=lambda row: row["valid_loss"]) if dense else None
    fields = ("epoch", "valid_loss", "valid_energy_mae", "valid_forces_mae", "density")
    return {
        "split": split,
        "worse_than_zero_shot": worse,
        "best_dense_phase": None if best is None else {k: best.get(k) for k in fields},
    }


def regression_warning(check: dict) -> str:
    """The line a run prints when :func:`zero_shot_check` found a regression."""
    parts = [
        f"{w['metric']} {1000 * w['final']:.2f} vs {1000 * w['zero_shot']:.2f}" for w in check["worse_than_zero_shot"]
    ]
    text = f"WARNING: the final model is worse than the zero-shot base on {check['split']}: {'; '.join(parts)} (x1000)"
    dense = check["best_dense_phase"]
    if dense:
        energy, forces = dense["valid_energy_mae"], dense["valid_forces_mae"]
        text += (
            f". Best epoch before the target density (epoch {dense['epoch']}, density {dense['density']:.3f}): "
            f"energy MAE {1000 * (energy if energy is not None else float('nan')):.2f} meV/atom, "
            f"force MAE {1000 * (forces if forces is not None else float('nan')):.1f} meV/Å"
        )
    return text
