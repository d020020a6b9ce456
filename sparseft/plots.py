"""PNG plots of a fine-tune: learning curves, parity plots, the sparsity map."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path):
    from .files import write_file_atomically

    write_file_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def validated_points(history: list[dict], key: str, scale: float = 1.0) -> tuple[list, list]:
    """``(epochs, values)`` of the epochs that have ``key`` (with ``train.eval_interval`` > 1 the
    others were not validated: joined, not left as gaps that hide isolated points)."""
    rows = [r for r in history if r.get(key) is not None]
    return [r["epoch"] for r in rows], [r[key] * scale for r in rows]


def learning_curves(history: list[dict], path: Path, support_fixed_epoch: float | None = None) -> None:
    """Loss, validation errors and density per epoch (integer ticks); a dotted line marks the
    step where a sparse fine-tune fixed its support."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    keys = list(history[0]) if history else []
    force_keys = [k for k in keys if k.startswith("valid_") and k.endswith("forces_mae")]
    magmom_keys = [k for k in keys if k.startswith("valid_") and k.endswith("magmoms_mae")]
    fig, axes = plt.subplots(1, 3 + bool(magmom_keys), figsize=(13 + 4 * bool(magmom_keys), 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in history], label="train")
    if any(r["valid_loss"] is not None for r in history):
        axes[0].plot(*validated_points(history, "valid_loss"), label="valid")
    axes[0].set_yscale("log")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    axes[0].legend()
    for key in force_keys:
        if any(r[key] is not None for r in history):
            head = key[len("valid_") :].rpartition(".")[0] or "foundation"
            axes[1].plot(*validated_points(history, key, 1000.0), label=head)
    axes[1].set(xlabel="epoch", ylabel="meV/Å", title="validation force MAE")
    if len(force_keys) > 1:
        axes[1].legend()
    for key in magmom_keys:
        axes[3].plot(*validated_points(history, key), label=key[len("valid_") :].rpartition(".")[0])
        axes[3].set(xlabel="epoch", ylabel="μB", title="validation magnetic-moment MAE")
        axes[3].legend()
    axes[2].plot(epochs, [r["density"] for r in history])
    axes[2].set(xlabel="epoch", ylabel="fraction changed", title="adapter density")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if support_fixed_epoch is not None:
            ax.axvline(support_fixed_epoch, color="0.5", ls=":", lw=1, label="support fixed" if ax is axes[2] else None)
    if support_fixed_epoch is not None:
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def parity(
    reference: np.ndarray,
    predicted: np.ndarray,
    baseline: np.ndarray | None,
    path: Path,
    *,
    title: str,
    unit: str,
    baseline_label: str = "zero-shot",
) -> None:
    """Predicted vs reference, with the zero-shot base model (or a head's initial state) in grey;
    each legend entry carries its MAE."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    mae = lambda values: f"MAE {np.abs(values - reference).mean():.3g} {unit}" if reference.size else "no data"  # noqa: E731
    if baseline is not None and baseline.size:
        ax.scatter(reference, baseline, s=4, c="0.7", label=f"base ({baseline_label}), {mae(baseline)}")
    ax.scatter(reference, predicted, s=4, c="C0", label=f"fine-tuned, {mae(predicted)}")
    if reference.size:
        lo = float(min(reference.min(), predicted.min()))
        hi = float(max(reference.max(), predicted.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel=f"reference ({unit})", ylabel=f"predicted ({unit})", title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


PARITY_STYLE = {  # quantity -> (title, unit, file name part)
    "energy_per_atom": ("energy per atom - E0s", "eV/atom", "energy"),
    "forces": ("force components", "eV/Å", "forces"),
    "stress": ("stress components", "eV/Å³", "stress"),
    "magmoms": ("magnetic moments", "μB", "magmoms"),
}


def parity_plots(parity_data: dict, out_dir: Path) -> None:
    """One parity plot per quantity and head (``parity_[<head>_]<quantity>.png``); energies per
    atom are shown relative to the E0s (the interaction energy), where errors are visible."""
    for metric, (split, (ref, pred), zero, e0) in parity_data.items():
        head, _, quantity = metric.rpartition(".")
        title, unit, file = PARITY_STYLE[quantity]
        if quantity == "energy_per_atom" and e0 is not None and len(e0) == len(ref):
            ref, pred, zero = ref - e0, pred - e0, None if zero is None else zero - e0
        else:
            title = title.replace(" - E0s", "")
        stem = f"parity_{head}_{file}" if head else f"parity_{file}"
        parity(
            ref,
            pred,
            zero,
            out_dir / f"{stem}.png",
            title=f"{(head + ' ') if head else ''}{title} ({split})",
            unit=unit,
            baseline_label="initial head" if head else "zero-shot",
        )


def sparsity_map(rows: list[dict], path: Path, elements: list[str] | None = None) -> None:
    """Heat map of density by (layer, kind) x output irrep l; ``elements``: the training
    elements the per-element densities are restricted to (named in the colour-bar label)."""
    plt = _pyplot()
    labels = sorted({(r["layer"], r["kind"]) for r in rows}, key=lambda k: (str(k[0]), k[1]))
    ls = sorted({r["l"] for r in rows}, key=lambda v: (v is None, v if v is not None else 0))
    grid = np.full((len(labels), len(ls)), np.nan)
    sizes = np.zeros_like(grid)
    for r in rows:
        i, j = labels.index((r["layer"], r["kind"])), ls.index(r["l"])
        changed = (0 if np.isnan(grid[i, j]) else grid[i, j] * sizes[i, j]) + r["changed"]
        sizes[i, j] += r["size"]
        grid[i, j] = changed / sizes[i, j]
    fig, ax = plt.subplots(figsize=(2 + 1.1 * len(ls), 1 + 0.32 * len(labels)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(range(len(ls)), [f"l={v}" if v is not None else "no irrep" for v in ls])
    ax.set_yticks(range(len(labels)), [f"layer {a} {b}" if a is not None else b for a, b in labels])
    for i in range(len(labels)):
        for j in range(len(ls)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=7, color="w")
    label = "fraction of weights changed" + (f"\n(of those {' '.join(elements)} data reach)" if elements else "")
    fig.colorbar(image, ax=ax, label=label)
    ax.set_title("where the fine-tune changed the model")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
