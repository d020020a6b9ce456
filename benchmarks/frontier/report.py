"""Frontier report (issue 20): reads ``runs/*/results.json`` and writes the markdown report with
tables, the zero-shot errors, the fraction of the zero-shot gap closed, the two targets of
issue 20 and one PNG per set (test force MAE vs stored adapter bytes and vs changed parameters).

    .venv/bin/python benchmarks/frontier/report.py [--output benchmarks/results/frontier.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

ORDER = list(C.ALL_METHODS)


def _mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def _fmt(m, s, scale=1.0, nd=1):
    if m is None:
        return "-"
    t = f"{m * scale:.{nd}f}"
    return t + (f" ± {s * scale:.{nd}f}" if s is not None else "")


def _bytes(b):
    if b is None:
        return "-"
    for unit, f in (("MB", 1e6), ("kB", 1e3)):
        if b >= f:
            return f"{b / f:.1f} {unit}"
    return f"{b} B"


def summarise(results, set_name, n, steps, device="cpu"):
    """Per method: the selected lr and the runs (all seeds) at it."""
    rows = {}
    for m in ORDER:
        best, scores = C.select_lr(results, set_name, m, n, steps, device)
        if best is None:
            continue
        runs = [
            r
            for r in C.ok(results)
            if (r["set"], r["method"], r["n"], r["lr"], r["max_steps"], r["device"])
            == (set_name, m, n, best, steps, device)
        ]
        runs.sort(key=lambda r: r["seed"])
        fm, fs = _mean_sd([r["test"]["forces_mae"] for r in runs])
        em, es = _mean_sd([r["test"].get("energy_per_atom_mae") for r in runs])
        grid = sorted(scores)
        edge = len(grid) > 1 and best in (grid[0], grid[-1])
        rows[m] = {
            "method": m,
            "lr": best,
            "scores": scores,
            "edge": edge,
            "runs": runs,
            "F": (fm, fs),
            "E": (em, es),
            "changed": _mean_sd([r["changed_parameters"] for r in runs])[0],
            "trainable": _mean_sd([r["trainable_parameters"] for r in runs])[0],
            "bytes": _mean_sd([r["adapter_bytes"] for r in runs])[0],
            "cpu": _mean_sd([r["cpu_s"] for r in runs])[0],
            "wall": _mean_sd([r["wall_s"] for r in runs])[0],
            "steps": [r["steps"] for r in runs],
            "best_epoch": [r["best_epoch"] for r in runs],
            "zs_F": runs[0]["zero_shot"].get("test", {}).get("forces_mae"),
            "zs_E": runs[0]["zero_shot"].get("test", {}).get("energy_per_atom_mae"),
        }
    return rows


def _density(method: str, row: dict) -> float:
    """A sparse method's target density, or the density its runs reached (``str`` has no target)."""
    target = C.ALL_METHODS[method].train.get("target_density")
    if target is not None:
        return target
    reached = _mean_sd([r.get("density") for r in row["runs"]])[0]
    return 1.0 if reached is None else reached  # 0.0 (nothing trained) is a density, not a missing one


def lora_frontier_check(rows):
    """For every sparse (and sparse + low-rank) adapter: LoRA's best test F among LoRA adapters
    stored in no more bytes."""
    loras = [r for m, r in rows.items() if m.startswith("lora") and r["bytes"] is not None]
    out = []
    for m, r in rows.items():
        if not m.startswith(("sparse", "rosa")) or r["bytes"] is None:
            continue
        cheaper = [q for q in loras if q["bytes"] <= r["bytes"]]
        if not cheaper:
            out.append((m, r, None, "no LoRA adapter as small"))
            continue
        q = min(cheaper, key=lambda q: q["F"][0])
        verdict = "on/below LoRA's frontier" if r["F"][0] <= q["F"][0] else "ABOVE LoRA's frontier"
        out.append((m, r, q, verdict))
    return out


def plot(set_name, rows, zs_F, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {
        "sparse": ("o", "C0"),
        "sparse fisher": ("*", "C4"),
        "sparse gradual": ("P", "C5"),
        "sparse padam": ("X", "C6"),
        "sparse perblock": ("d", "C9"),
        "sparse str": ("p", "C8"),
        "rosa": ("v", "C7"),
        "lora": ("s", "C1"),
        "freeze": ("^", "C2"),
        "full": ("D", "C3"),
    }

    def family(m):
        if m.startswith("sparse-str"):
            return "sparse str"
        for mode in ("fisher", "gradual", "padam", "perblock"):
            if m.endswith(mode):
                return f"sparse {mode}"
        return m.split("-")[0]

    for ax, key, label in (
        (axes[0], "bytes", "stored adapter size (bytes)"),
        (axes[1], "changed", "changed parameters"),
    ):
        for fam, (mk, col) in style.items():
            pts = sorted(
                [(r[key], r["F"][0], r["F"][1] or 0.0, m) for m, r in rows.items() if family(m) == fam and r[key]],
            )
            if not pts:
                continue
            xs, ys, es, names = zip(*pts)
            ax.errorbar(
                xs,
                [1000 * y for y in ys],
                yerr=[1000 * e for e in es],
                marker=mk,
                color=col,
                label=fam,
                linestyle="-" if len(pts) > 1 else "none",
                capsize=3,
            )
            for x, y, nm in zip(xs, ys, names):
                ax.annotate(nm, (x, 1000 * y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if zs_F is not None:
            ax.axhline(1000 * zs_F, color="grey", linestyle=":", label="zero-shot")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test force MAE (meV/Å)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{set_name}: error vs budget (selected lr per method; mean ± sd over seeds)")
    fig.tight_layout()
    tmp = Path(str(path) + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return f"{cpu}, {os.cpu_count()} logical cores, {mem:.0f} GiB"


def versions() -> str:
    out = [f"python {platform.python_version()}"]
    for mod in ("torch", "e3nn", "sevenn", "mace", "ase"):
        try:
            from importlib.metadata import version

            out.append(f"{mod} {version(mod if mod != 'mace' else 'mace-torch')}")
        except Exception:  # noqa: BLE001
            pass
    return ", ".join(out)


def build(results, title, png_prefix: Path, md_dir: Path, notes: str = "") -> str:
    oks = C.ok(results)
    L = [f"# {title}", ""]
    L.append(
        f"Written by `benchmarks/frontier/report.py` on {dt.datetime.utcnow():%Y-%m-%d %H:%M} UTC from "
        f"{len(oks)} cached runs (`benchmarks/frontier/runs/*/results.json`; {sum(r.get('status') == 'failed' for r in results)} failed)."
    )
    L.append("")
    if notes:
        L += [notes.rstrip(), ""]
    if oks:
        loads = [x for r in oks for x in (r["load_before"][0], r["load_after"][0])]
        starts = [dt.datetime.fromisoformat(r["finished_utc"]) - dt.timedelta(seconds=r["wall_s"]) for r in oks]
        ends = [dt.datetime.fromisoformat(r["finished_utc"]) for r in oks]
        devices = sorted({r["device"] for r in oks})
        L.append(
            f"- machine: {machine()}; device {', '.join(devices)}; {oks[0]['threads']} torch thread per run, "
            f"OMP_WAIT_POLICY=PASSIVE; {versions()}"
        )
        L.append(
            f"- runs from {min(starts):%Y-%m-%d %H:%M} to {max(ends):%H:%M} UTC ({(max(ends) - min(starts)).total_seconds() / 60:.0f} min wall), "
            f"sum of run wall times {sum(r['wall_s'] for r in oks) / 60:.0f} min, sum of CPU times {sum(r['cpu_s'] for r in oks) / 60:.0f} min; "
            f"1-min load average at run starts/ends {min(loads):.1f}-{max(loads):.1f}"
        )
        commits = sorted({r.get("sparseft_commit", "?") for r in oks})
        L.append(f"- sparseft source: {', '.join('`' + c + '`' for c in commits)}")
        L.append("")
    sets = [s for s in C.SETS if any(r["set"] == s for r in oks)] + sorted({r["set"] for r in oks} - set(C.SETS))
    target_lines = []
    for s in sets:
        for steps, device in sorted({(r["max_steps"], r["device"]) for r in oks if r["set"] == s}):
            rows = summarise(results, s, None, steps, device)
            tag = "" if device == "cpu" else f", {device}"
            if not rows:
                continue
            any_run = next(iter(rows.values()))["runs"][0]
            ds = C.SETS.get(s)
            counts = any_run.get("counts", {})
            L.append(f"## {s} ({steps} steps{tag}): {ds.description if ds else s}")
            L.append("")
            zs_F, zs_E = next(iter(rows.values()))["zs_F"], next(iter(rows.values()))["zs_E"]
            L.append(
                f"Split (sparseft's, `split_seed` 0): {counts.get('train', '?')} train / {counts.get('valid', '?')} valid / "
                f"{counts.get('test', '?')} test frames. Budget {steps} optimiser steps, batch {any_run['batch_size']}, "
                f"patience {any_run['patience']} validated epochs (one per epoch), best epoch and early stopping on "
                f"validation {any_run.get('select_on', 'loss')}."
            )
            L.append("")
            L.append(
                f"**Zero-shot SevenNet-0** (per-element E0 refit on the training split, `E0s: estimated`): test F "
                f"{_fmt(zs_F, None, 1000)} meV/Å, test E {_fmt(zs_E, None, 1000, 2)} meV/atom."
            )
            L.append("")
            full = rows.get("full")
            fF = full["F"][0] if full else None
            L.append(
                "| method | lr | seeds | test F MAE (meV/Å) | test E MAE (meV/atom) | F / zero-shot | gap closed vs full | "
                "F vs full | changed params | trained (stored) params | stored adapter | CPU s / run | steps run | best epoch |"
            )
            L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            for m, r in rows.items():
                F = r["F"][0]
                gap = (zs_F - F) / (zs_F - fF) if (fF is not None and zs_F and zs_F != fF) else None
                tie = ""
                if full and m != "full":
                    spread = max(x or 0 for x in (r["F"][1], full["F"][1]))
                    tie = " (tie)" if spread and abs(F - fF) < spread else ""
                L.append(
                    f"| {m} | {r['lr']:g}{' (edge)' if r['edge'] else ''} | {len(r['runs'])} | {_fmt(*r['F'], 1000)} | "
                    f"{_fmt(*r['E'], 1000, 2)} | {F / zs_F:.2f} | {'-' if gap is None else f'{gap:.2f}'} | "
                    f"{'-' if fF is None else f'{F / fF:.2f}{tie}'} | {r['changed']:,.0f} | {r['trainable']:,.0f} | {_bytes(r['bytes'])} | "
                    f"{r['cpu']:.0f} | {'/'.join(str(x) for x in r['steps'])} | {'/'.join(str(x) for x in r['best_epoch'])} |"
                )
            L.append("")
            L.append(
                "*F / zero-shot*: test F over the zero-shot base's; *gap closed vs full*: (zero-shot F - F) / "
                "(zero-shot F - full's F), 1.00 = what full fine-tuning closes, > 1 more; *(tie)*: differs from full by "
                "less than the larger seed spread; *changed params*: weights of the merged model that differ from the "
                "base (LoRA changes whole matrices); *trained (stored) params*: numbers the adapter trains and stores; "
                "*stored adapter*: size of the `adapter/` folder (safetensors + sparseft.json)."
            )
            L.append("")
            L.append(
                "lr selected on validation force MAE (seed 0; meV/Å per lr; *edge*: the best is at the edge of what was tried): "
                + "; ".join(
                    f"{m}: " + ", ".join(f"{lr:g}: {1000 * v:.1f}" for lr, v in r["scores"].items())
                    for m, r in rows.items()
                )
            )
            L.append("")
            budgets = sorted({r["max_steps"] for r in oks if (r["set"], r["device"]) == (s, device)})
            tag_steps = "" if steps == budgets[0] else f"-st{steps}"  # the smallest budget keeps the plain name
            tag_device = "" if device == "cpu" else "-" + device.replace(":", "")
            png = Path(f"{png_prefix}-{s}{tag_device}{tag_steps}.png")
            try:
                plot(s, rows, zs_F, png)
                rel = os.path.relpath(png, md_dir)
                L += [f"![{s} frontier]({rel})", ""]
            except Exception as exc:  # noqa: BLE001
                L += [f"(plot failed: {exc})", ""]
            # targets
            sparse_small = {m: r for m, r in rows.items() if m.startswith("sparse") and _density(m, r) <= 0.03 + 1e-9}
            if sparse_small and fF is not None:
                m, r = min(sparse_small.items(), key=lambda kv: kv[1]["F"][0])
                ratio = r["F"][0] / fF
                spread = max(x or 0 for x in (r["F"][1], full["F"][1]))
                if spread and abs(r["F"][0] - fF) < spread:
                    verdict = f"tie within the seed spread ({len(r['runs'])} vs {len(full['runs'])} seeds)"
                else:
                    verdict = "MET" if ratio <= 1.0 else "MISSED"
                verdict += "" if len(r["runs"]) > 1 and len(full["runs"]) > 1 else ", one seed"
                target_lines.append(
                    f"- {s} ({steps} steps): best sparse <= 3% is {m} at {_fmt(*r['F'], 1000)} meV/Å vs full "
                    f"{_fmt(*full['F'], 1000)}: ratio {ratio:.2f} -> target (<= 1.00): {verdict}"
                )
            for m, r, q, verdict in lora_frontier_check(rows):
                extra = (
                    ""
                    if q is None
                    else f" (best LoRA in <= bytes: {q['method']}, {_fmt(*q['F'], 1000)} meV/Å at {_bytes(q['bytes'])})"
                )
                target_lines.append(
                    f"  - {s}: {m} {_fmt(*r['F'], 1000)} meV/Å at {_bytes(r['bytes'])}: {verdict}{extra}"
                )
            # learning curves
            curve = defaultdict(dict)
            for rr in oks:
                if (rr["set"], rr["max_steps"], rr["device"]) == (s, steps, device) and rr["n"] is not None:
                    if rows.get(rr["method"]) and rr["lr"] == rows[rr["method"]]["lr"]:
                        curve[rr["method"]].setdefault(rr["n"], []).append(rr["test"]["forces_mae"])
            if curve:
                sizes = sorted({n for d in curve.values() for n in d})
                L.append("Learning curves (test F meV/Å, lr selected at n = all):")
                L.append("")
                L.append("| method | " + " | ".join(f"n={n}" for n in sizes) + " | n=all |")
                L.append("|---|" + "---|" * (len(sizes) + 1))
                for m in rows:
                    if m in curve:
                        cells = [_fmt(*_mean_sd(curve[m].get(n, [])), 1000) for n in sizes]
                        L.append(f"| {m} | " + " | ".join(cells) + f" | {_fmt(*rows[m]['F'], 1000)} |")
                L.append("")
    if target_lines:
        L += ["## Targets of issue 20 (as measured here)", "", *target_lines, ""]
    L += convergence_lines(oks)
    failed = [r for r in results if r.get("status") == "failed"]
    if failed:
        L += ["## Failed runs", ""]
        for r in failed:
            L.append(f"- `{r['id']}`: rc {r.get('rc')}: {' / '.join(r.get('log_tail', [])[-2:])}")
        L.append("")
    L += [
        "## All runs",
        "",
        "| run | valid F | test F | test E | changed | adapter | steps | best epoch | wall s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        oks,
        key=lambda r: (
            r["set"],
            ORDER.index(r["method"]) if r["method"] in ORDER else 99,
            r["lr"],
            r["seed"],
            r["n"] or 0,
        ),
    ):
        L.append(
            f"| `{r['id']}` | {1000 * r['valid']['forces_mae']:.1f} | {1000 * r['test']['forces_mae']:.1f} | "
            f"{1000 * r['test'].get('energy_per_atom_mae', float('nan')):.2f} | {r['changed_parameters']:,} | {_bytes(r['adapter_bytes'])} | "
            f"{r['steps']} | {r['best_epoch']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} |"
        )
    L.append("")
    return "\n".join(L)


def convergence_lines(oks: list[dict]) -> list[str]:
    """How far each run was from converged: the best validation force MAE reached within the first
    1/4, 1/2, 3/4 and all of its validated epochs, and the last quarter's gain (the runs of each
    set's largest budget that stored their curve: ``valid_forces_curve``)."""
    longest: dict = defaultdict(int)  # each set's largest budget: the runs that should be nearest converged
    for r in oks:
        longest[r["set"], r["device"]] = max(longest[r["set"], r["device"]], r["max_steps"])
    runs = [
        r
        for r in oks
        if len(r.get("valid_forces_curve") or []) >= 4 and r["max_steps"] == longest[r["set"], r["device"]]
    ]
    if not runs:
        return []
    L = [
        "## Convergence (best validation F in meV/Å within the first fraction of the epochs)",
        "",
        "The cosine schedule reaches lr 0 at the budget, so a flat last quarter means the run settled at this "
        "budget, not that a longer one would not go lower.",
        "",
        "| run | epochs | best epoch | 1/4 | 1/2 | 3/4 | all | last-quarter gain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: r["id"]):
        c = r["valid_forces_curve"]
        best = [1000 * min(c[: max(1, round(len(c) * q))]) for q in (0.25, 0.5, 0.75, 1.0)]
        L.append(
            f"| `{r['id']}` | {len(c)} | {r['best_epoch']} | "
            + " | ".join(f"{b:.1f}" for b in best)
            + f" | {100 * (best[2] - best[3]) / best[2]:.1f} % |"
        )
    L.append("")
    return L


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs-dir", default=str(C.RUNS))
    ap.add_argument("--output", default=str(C.REPO / "benchmarks" / "results" / "frontier.md"))
    ap.add_argument("--png-prefix", default=None, help="default: <output folder>/frontier")
    ap.add_argument("--title", default="Error-vs-budget frontier on SevenNet-0 (issue 20)")
    ap.add_argument("--notes", default=None, help="a markdown file inserted after the header")
    a = ap.parse_args(argv)
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = Path(a.png_prefix) if a.png_prefix else out.parent / "frontier"
    notes = Path(a.notes).read_text() if a.notes else ""
    text = build(C.load_results(Path(a.runs_dir)), a.title, prefix, out.parent, notes)
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
