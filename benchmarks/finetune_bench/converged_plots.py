"""The converged report's figures: test force error vs fraction of weights changed (seed spread as
error bars), learning curves, and forgetting vs target error (with and without replay)."""

from __future__ import annotations

from pathlib import Path

from .converged import summarize

COLORS = {"sparse": "tab:blue", "lora": "tab:orange", "freeze": "tab:green", "full": "tab:red"}


def _color(key: str, family: str) -> str:
    if key.startswith("mace-"):
        return "black"
    return COLORS.get(family, "tab:gray")


def _points(info: dict, split: str = "test"):
    """(key, family, changed %, F mean, F spread, forget mean, forget spread) per finished method."""
    for key, runs in info["runs"].items():
        ok = [r for r in runs if r.get("status") == "ok"]
        f, g = summarize(ok, split, "forces_mae"), summarize(ok, "forget", "forces_mae")
        if not ok or f is None or g is None:
            continue
        changed = 100 * sum(r["changed_parameters"] / r["base_parameters"] for r in ok) / len(ok)
        yield key, ok[0]["family"], changed, 1000 * f[0], 1000 * f[1], 1000 * g[0], 1000 * g[1]


def _error_vs_changed(ax, ds: str, info: dict) -> None:
    for key, fam, changed, f, fs, _, _ in _points(info):
        if "+replay" in key:
            continue
        ax.errorbar(changed, f, yerr=fs, fmt="o", color=_color(key, fam), capsize=3)
        ax.annotate(key, (changed, f), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("weights changed (%)")
    ax.set_ylabel("test force MAE (meV/Å), mean ± sd over seeds")
    ax.set_title(ds, fontsize=9)


def _learning_curves(ax, ds: str, info: dict) -> None:
    for key, curve in info["lc"].items():
        points = [(int(n), s) for n, runs in curve.items() if (s := summarize(runs, "test", "forces_mae"))]
        xs = [n for n, _ in points]
        ys = [1000 * s[0] for _, s in points]
        es = [1000 * s[1] for _, s in points]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=key, color=_color(key, key.split("-")[0]))
    ax.set_xscale("log")
    ax.set_xlabel("training structures")
    ax.set_ylabel("test force MAE (meV/Å)")
    ax.set_title(ds, fontsize=9)
    ax.legend(fontsize=7)


def _forgetting(ax, ds: str, info: dict) -> None:
    for key, fam, _, f, fs, g, gs in _points(info):
        marker = "s" if "+replay" in key else "o"
        ax.errorbar(f, g, xerr=fs, yerr=gs, fmt=marker, color=_color(key, fam), capsize=2)
        ax.annotate(key, (f, g), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.axhline(1000 * info["base"]["forget"]["forces_mae"], color="gray", ls=":", lw=1)
    ax.set_xlabel("test force MAE (meV/Å)")
    ax.set_ylabel("forgetting-set force MAE (meV/Å)")
    ax.set_title(f"{ds} (dotted: zero-shot base; squares: replay)", fontsize=8)


def converged_plots(state: dict, out_dir: Path, name: str) -> list[str]:
    """Write the three PNGs next to the report (one panel per data set); returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, i in state.items() if i["runs"]]
    figures = [
        (f"{name}-error-vs-changed.png", _error_vs_changed, names),
        (f"{name}-learning-curves.png", _learning_curves, [ds for ds in names if state[ds].get("lc")]),
        (f"{name}-forgetting.png", _forgetting, names),
    ]
    written = []
    for fname, panel, shown in figures:
        if not shown:
            continue
        fig, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 4.0), squeeze=False)
        for ax, ds in zip(axes[0], shown):
            panel(ax, ds, state[ds])
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        written.append(fname)
    return written
