"""``results/converged.md``: the converged protocol's tables (mean ± spread over seeds, ties), the
goals of issue 10 with their status, and which planned runs are still missing."""

from __future__ import annotations

import re
from pathlib import Path

from .converged import compare, summarize
from .converged_goals import goal_lines, lc_lines
from .converged_plots import converged_plots

DISCUSSION = re.compile(r"<!-- discussion:start -->.*<!-- discussion:end -->", re.S)


def _fmt(stat, scale=1000.0, digits=1) -> str:
    if stat is None:
        return "-"
    mean, spread, n = stat
    return f"{scale * mean:.{digits}f} ± {scale * spread:.{digits}f}" + ("" if n >= 3 else f" (n={n})")


def _changed(runs) -> str:
    values = [r["changed_parameters"] / r["base_parameters"] for r in runs if r.get("status") == "ok"]
    return f"{100 * sum(values) / len(values):.2f}" if values else "-"


def _epochs(runs) -> str:
    values = [r.get("epochs_run") or 0 for r in runs if r.get("status") == "ok"]
    return "/".join(str(v) for v in values) or "-"


def _machine(m) -> str:
    if not isinstance(m, dict):
        return str(m)
    packages = ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items())
    return (
        f"{m.get('cpu')}, {m.get('logical_cores')} logical cores, {m.get('memory')}; {m.get('threads')} torch "
        f"thread per training process, OMP_WAIT_POLICY={m.get('omp_wait_policy')}; "
        f"python {m.get('python')}, {packages}"
    )


def dataset_table(name: str, info: dict) -> list[str]:
    runs = info["runs"]
    extra = [k for k in info["task"].extra.get("tests", {})]
    head = (
        ["method", "lr", "seeds", "test F MAE (meV/Å)", "test E MAE (meV/atom)"]
        + [f"{k} F MAE" for k in extra]
        + ["forget F MAE", "changed %", "epochs run", "F vs full", "F vs full@cap", "F vs mace full"]
    )
    lines = [
        f"### {name}: {info['task'].title}",
        "",
        f"Base: {info['task'].base_desc}. Target: {info['task'].target_desc}. Forgetting: {info['task'].forget_desc}.",
        f"Zero-shot base (fine-tune E0s): test F {1000 * info['base']['test']['forces_mae']:.1f} meV/Å, "
        f"E {1000 * info['base']['test']['energy_mae']:.2f} meV/atom; forgetting set F "
        f"{1000 * info['base']['forget']['forces_mae']:.1f} meV/Å"
        + "".join(f"; {k} F {1000 * info['base'][k]['forces_mae']:.1f}" for k in extra if k in info["base"])
        + ".",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    full = summarize(runs.get("full", []), "test", "forces_mae")
    full_cap = summarize(runs.get("full@cap", []), "test", "forces_mae")
    mace = summarize(runs.get("mace-full", []), "test", "forces_mae")
    for key, rs in runs.items():
        if not any(r.get("status") == "ok" for r in rs):
            continue  # not run on this data set (the status section lists it)
        f = summarize(rs, "test", "forces_mae")
        lrs = sorted({r["lr"] for r in rs if r.get("status") == "ok"}, key=str)
        row = [
            key,
            ",".join(x if isinstance(x, str) else f"{x:g}" for x in lrs) or "-",
            str(sum(r.get("status") == "ok" for r in rs)),
            _fmt(f),
            _fmt(summarize(rs, "test", "energy_mae"), digits=2),
        ]
        row += [_fmt(summarize(rs, k, "forces_mae")) for k in extra]
        row += [
            _fmt(summarize(rs, "forget", "forces_mae")),
            _changed(rs),
            _epochs(rs),
            compare(f, full),
            compare(f, full_cap),
            compare(f, mace),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lr_lines = [
        f"{g}: {v['chosen']:g} (valid scores "
        + ", ".join(f"{k}: {s:.4g}" for k, s in v["scores"].items())
        + "".join(f", {x:g}: not run" for x in v["grid"] if f"{x:g}" not in v["scores"])
        + ")"
        for g, v in info["lr"].items()
        if v["scores"]
    ]
    if lr_lines:
        lines += [
            "",
            "lr chosen on validation (seed 0, score = forces_weight x F MAE + energy_weight x E MAE, eV): "
            + "; ".join(lr_lines),
        ]
    return lines + [""]


def status_lines(state: dict, planned: dict, seeds: int) -> list[str]:
    lines = ["## Status of the grid", ""]
    for name, keys in planned.items():
        info = state.get(name)
        done = {k: sum(r.get("status") == "ok" for r in info["runs"].get(k, [])) for k in keys} if info else {}
        missing = [k for k in keys if done.get(k, 0) < seeds]
        lines.append(
            f"- {name}: {sum(v >= seeds for v in done.values())}/{len(keys)} methods with {seeds} seeds"
            + (f"; missing or partial: {', '.join(missing)}" if missing else "")
        )
    return lines + [""]


def write_converged_report(state: dict, meta: dict, planned: dict, path: Path, seeds: int = 3) -> Path:
    old = path.read_text() if path.is_file() else ""
    kept = DISCUSSION.search(old)
    lines = [
        "# Converged fine-tuning benchmark (issue 10)",
        "",
        f"Written by `benchmarks/run.py --protocol converged` on {meta['date']} (`{meta['command']}`).",
        "",
        f"- machine: {_machine(meta['machine'])}; load average (1 min) during the runs {meta['load_min']:.1f}-"
        f"{meta['load_max']:.1f} (shared with other jobs)",
        f"- protocol: {meta['protocol']}",
        "- sparseft source per data set: " + ", ".join(f"{n}: `{src}`" for n, src in meta.get("sources", {}).items()),
        "",
    ]
    lines += status_lines(state, planned, seeds)
    lines += [
        "## Results (mean ± sample standard deviation over seeds; a ratio marked *tie* differs from the "
        "reference by less than the larger spread)",
        "",
    ]
    for name, info in state.items():
        lines += dataset_table(name, info)
    lines += lc_lines(state)
    lines += goal_lines(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = converged_plots(state, path.parent, path.stem)
    lines += [f"![{f}]({f})" for f in figures] + [""]
    lines.append(kept.group(0) if kept else "<!-- discussion:start -->\n<!-- discussion:end -->")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
