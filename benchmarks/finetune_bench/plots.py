"""The report's PNG figures: test force error vs weights changed, learning curves, and
forgetting vs target error."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from .results import lc_groups


def plots(state: dict, out_dir: Path, name: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "sparse": "tab:blue",
        "sparse-diag": "tab:cyan",
        "lora": "tab:orange",
        "freeze": "tab:green",
        "full": "tab:red",
        "scratch": "tab:gray",
        "mace-full": "tab:red",
        "mace-freeze": "tab:green",
        "mace-lora": "tab:orange",
    }
    infos = [i for i in state.values() if i.get("main")]
    short = {
        "ecemc": "ecemc: xTB model -> EC/EMC liquid (2nd level of theory)",
        "domain": "domain: EMT mini-foundation -> Cu-Au GFN1-xTB",
    }
    written = []
    if not infos:
        return written

    def save(fig, fname):
        path = out_dir / fname
        fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".png", dir=out_dir)
        os.close(fd)
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        plt.close(fig)
        written.append(fname)

    # 1. test force error vs fraction of parameters changed
    fig, axes = plt.subplots(1, len(infos), figsize=(6.2 * len(infos), 4.4), squeeze=False)
    for ax, info in zip(axes[0], infos):
        for r in info["main"]:
            if r.get("status") != "ok" or r["family"] == "scratch":  # off scale; in the tables
                continue
            x = max(r["changed_parameters"] / r["base_parameters"], 1e-4)
            mace = r["tool"] == "mace"
            ax.scatter(
                x,
                1000 * r["test"]["forces_mae"],
                s=55,
                marker="s" if mace else "o",
                facecolors="none" if mace else colors[r["family"]],
                edgecolors=colors[r["family"]],
                linewidths=1.5,
            )
            ax.annotate(
                r["method"], (x, 1000 * r["test"]["forces_mae"]), textcoords="offset points", xytext=(4, 3), fontsize=7
            )
        ax.axhline(1000 * info["base"]["test"]["forces_mae"], ls="--", color="k", lw=1, label="zero-shot base")
        ax.set_xscale("log")
        ticks = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
        ax.set_xticks(ticks, [f"{100 * t:g}%" for t in ticks])
        ax.minorticks_off()
        ax.set(
            xlabel="weights changed (fraction of the base's)",
            ylabel="test force MAE (meV/Å)",
            title=short.get(info["task"].name, info["task"].name),
            xlim=(0.002, 1.6),
        )
        ax.title.set_fontsize(10)
        ax.scatter([], [], marker="o", color="gray", label="sparseft (filled)")
        ax.scatter([], [], marker="s", facecolors="none", edgecolors="gray", label="mace_run_train (open)")
        ax.legend(fontsize=8, loc="best")
    save(fig, f"{name}-error-vs-changed.png")

    # 2. learning curves
    lc = [i for i in infos if lc_groups(i)]
    if lc:
        fig, axes = plt.subplots(1, len(lc), figsize=(6.2 * len(lc), 4.4), squeeze=False)
        for ax, info in zip(axes[0], lc):
            for by_n in lc_groups(info).values():
                ns = sorted(by_n)
                mean = [1000 * statistics.mean(r["test"]["forces_mae"] for r in by_n[n]) for n in ns]
                lo = [m - 1000 * min(r["test"]["forces_mae"] for r in by_n[n]) for m, n in zip(mean, ns)]
                hi = [1000 * max(r["test"]["forces_mae"] for r in by_n[n]) - m for m, n in zip(mean, ns)]
                fam = by_n[ns[0]][0]["family"]
                ax.errorbar(
                    ns, mean, yerr=[lo, hi], marker="o", capsize=3, color=colors[fam], label=by_n[ns[0]][0]["label"]
                )
            ax.axhline(1000 * info["base"]["test"]["forces_mae"], ls="--", color="k", lw=1, label="zero-shot base")
            ax.set_xscale("log")
            sizes = sorted({n for by_n in lc_groups(info).values() for n in by_n})
            ax.set_xticks(sizes, [str(n) for n in sizes])
            ax.minorticks_off()
            ax.set(
                xlabel="training structures (log scale; error bars: min-max over seeds)",
                ylabel="test force MAE (meV/Å)",
                title=f"{info['task'].name}: learning curves",
            )
            ax.legend(fontsize=8)
        save(fig, f"{name}-learning-curves.png")

    # 3. forgetting vs target error (one panel per data set, plus one per forgetting subset)
    panels = [(info, None) for info in infos]
    panels += [
        (info, k) for info in infos for k in info.get("subsets", {}) if k in info["base"].get("forget_subsets", {})
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (info, sub) in zip(axes[0], panels):
        get = (lambda r: r["forget"]) if sub is None else (lambda r, k=sub: r.get("forget_subsets", {}).get(k))
        for r in info["main"]:
            if r.get("status") != "ok" or not get(r) or r["family"] == "scratch":  # off scale; in the tables
                continue
            mace = r["tool"] == "mace"
            x, y = 1000 * r["test"]["forces_mae"], 1000 * get(r)["forces_mae"]
            ax.scatter(
                x,
                y,
                s=55,
                marker="s" if mace else "o",
                facecolors="none" if mace else colors[r["family"]],
                edgecolors=colors[r["family"]],
                linewidths=1.5,
            )
            ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        b = info["base"]
        ax.scatter(
            1000 * b["test"]["forces_mae"],
            1000 * get(b)["forces_mae"],
            marker="*",
            s=140,
            color="k",
            label="zero-shot base",
        )
        ax.set(
            xlabel="target test force MAE (meV/Å)",
            ylabel="force MAE on the original level of theory (meV/Å)",
            title=f"{short.get(info['task'].name, info['task'].name)}"
            if sub is None
            else f"{info['task'].name}: {info['subsets'][sub]} only",
        )
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    save(fig, f"{name}-forgetting.png")
    return written
