"""The markdown report: settings, the main comparison and learning-curve tables, the goals
with their numbers, and the kept discussion (``<!-- discussion:start/end -->``)."""

from __future__ import annotations

import statistics
from pathlib import Path

from .config import GOAL_ADAPTER_OVERHEAD, GOAL_EPOCH_RATIO, GOAL_SPARSE_VS_FULL, SCRATCH_LR, SPARSE_L1
from .data import Task
from .formatting import fmt, human_bytes, pct
from .plots import plots
from .report_heads import heads_section
from .results import lc_groups
from .util import write_atomic

DISCUSSION_START = "<!-- discussion:start -->"
DISCUSSION_END = "<!-- discussion:end -->"


def main_table(info: dict) -> list[str]:
    rows = [r for r in info["main"] if r.get("status") == "ok"]
    mace_full = next((r for r in rows if r["method"] == "mace-full"), None)
    sft_full = next((r for r in rows if r["method"] == "full"), None)
    base = info["base"]
    subsets = [k for k in info.get("subsets", {}) if k in base.get("forget_subsets", {})]
    sub_head = "".join(
        f" {info['subsets'][k].replace('forgetting-set structures', 'forgetting F MAE,')} (meV/Å, "
        f"{base['forget_subsets'][k]['frames']} structures, base "
        f"{fmt(base['forget_subsets'][k]['forces_mae'])}) |"
        for k in subsets
    )

    def sub_cells(r):
        return "".join(f" {fmt(r.get('forget_subsets', {}).get(k, {}).get('forces_mae'))} |" for k in subsets)

    lines = [
        "| method | tool | trainable | changed | test E MAE (meV/atom) | test F MAE (meV/Å) | forgetting F MAE "
        "(meV/Å, base "
        + fmt(base["forget"]["forces_mae"])
        + ") |"
        + sub_head
        + " forgetting E MAE (meV/atom, base "
        + fmt(base["forget"]["energy_mae"], spec=".2f")
        + ") | epoch CPU s (wall s) | CPU ratio vs mace full "
        "(wall) | CPU ratio vs sparseft full (wall) | peak RSS (MB) | adapter / model file | run wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(subsets),
        f"| zero-shot base | - | 0 | 0 | {fmt(base['test']['energy_mae'], spec='.2f')} | "
        f"{fmt(base['test']['forces_mae'])} | {fmt(base['forget']['forces_mae'])} |{sub_cells(base)} "
        f"{fmt(base['forget']['energy_mae'], spec='.2f')} | - | - | - | - | - | - |",
    ]

    def ratio(r, ref):
        if not ref or not r.get("epoch_cpu_s") or not ref.get("epoch_cpu_s"):
            return "-"
        return f"{r['epoch_cpu_s'] / ref['epoch_cpu_s']:.2f} ({r['epoch_s'] / ref['epoch_s']:.2f})"

    for r in info["main"]:
        if r.get("status") != "ok":
            lines.append(f"| {r['label']} | {r['tool']} | FAILED (rc {r.get('rc')}) | | | | | | | | | | | |")
            continue
        bp = r["base_parameters"]
        fileinfo = (
            f"{human_bytes(r['adapter_bytes'])} ({100 * r['adapter_bytes'] / r['base_model_bytes']:.0f}% of base file)"
            if r["tool"] == "sparseft"
            else f"{human_bytes(r['model_bytes'])} (whole model)"
        )
        lines.append(
            f"| {r['label']} | {r['tool']} | {r['trainable_parameters']:,} ({pct(r['trainable_parameters'] / bp, 1)}) | "
            f"{r['changed_parameters']:,} ({pct(r['changed_parameters'] / bp)}) | {fmt(r['test']['energy_mae'], spec='.2f')} | "
            f"**{fmt(r['test']['forces_mae'])}** | {fmt(r['forget']['forces_mae'])} |{sub_cells(r)} "
            f"{fmt(r['forget']['energy_mae'], spec='.2f')} | {r['epoch_cpu_s']:.2f} ({r['epoch_s']:.2f}) | "
            f"{ratio(r, mace_full)} | {ratio(r, sft_full)} | "
            f"{r['peak_rss_mb']:.0f} | {fileinfo} | {r['wall_s']:.0f} |"
        )
    return lines


def lc_table(info: dict) -> list[str]:
    groups = lc_groups(info)
    if not groups:
        return []
    lines = [
        "| method | train structures | epochs | seeds | test F MAE (meV/Å): mean (min-max) | "
        "test E MAE (meV/atom): mean (min-max) | forgetting F MAE (meV/Å) |",
        "|---|---|---|---|---|---|---|",
    ]
    for by_n in groups.values():
        for n in sorted(by_n):
            rs = by_n[n]
            f = [r["test"]["forces_mae"] for r in rs]
            e = [r["test"]["energy_mae"] for r in rs]
            g = [r["forget"]["forces_mae"] for r in rs]

            def spread(xs, s):
                extra = f" ({1000 * min(xs):{s}}-{1000 * max(xs):{s}})" if len(xs) > 1 else ""
                return f"{1000 * statistics.mean(xs):{s}}" + extra

            lines.append(
                f"| {rs[0]['label']} | {n} | {rs[0]['epochs']} | {len(rs)} | {spread(f, '.1f')} | "
                f"{spread(e, '.2f')} | {spread(g, '.1f')} |"
            )
    return lines


def goals(info: dict) -> list[tuple[str, str, str]]:
    """(goal, status, numbers) for one data set."""
    rows = {r["method"]: r for r in info["main"] if r.get("status") == "ok"}
    out = []
    full = rows.get("full")
    sparse = [
        r
        for r in rows.values()
        if r["family"] == "sparse" and r["changed_parameters"] <= 0.03 * r["base_parameters"] * 1.0001
    ]
    peers = [r for r in rows.values() if r["family"] in ("mace-lora", "mace-freeze")]
    if full and sparse:
        best = min(sparse, key=lambda r: r["test"]["forces_mae"])
        ratio = best["test"]["forces_mae"] / full["test"]["forces_mae"]
        out.append(
            (
                "sparse (<= 3% changed) test F MAE within 5% of full fine-tuning",
                "met" if ratio <= GOAL_SPARSE_VS_FULL else "MISSED",
                f"best: {best['label']} {fmt(best['test']['forces_mae'])} vs full {fmt(full['test']['forces_mae'])} "
                f"meV/Å (ratio {ratio:.3f})",
            )
        )
        if peers:
            beaten = [p for p in peers if best["test"]["forces_mae"] < p["test"]["forces_mae"]]
            out.append(
                (
                    "that sparse setting beats mace's LoRA and freeze",
                    "met"
                    if len(beaten) == len(peers)
                    else f"MISSED ({len(peers) - len(beaten)} of {len(peers)} better)",
                    "; ".join(
                        f"{p['label']}: {fmt(p['test']['forces_mae'])} meV/Å, "
                        f"{pct(p['trainable_parameters'] / p['base_parameters'], 1)} trainable, "
                        f"{pct(p['changed_parameters'] / p['base_parameters'], 1)} changed"
                        for p in peers
                    ),
                )
            )
    if full and sparse:
        worst = max(sparse, key=lambda r: r["forget"]["forces_mae"])
        best_f = min(sparse, key=lambda r: r["forget"]["forces_mae"])
        ok = all(r["forget"]["forces_mae"] < full["forget"]["forces_mae"] for r in sparse)
        numbers = (
            f"sparse (<= 3%): {fmt(best_f['forget']['forces_mae'])}-{fmt(worst['forget']['forces_mae'])} vs "
            f"full {fmt(full['forget']['forces_mae'])} meV/Å (base {fmt(info['base']['forget']['forces_mae'])})"
        )
        for k, desc in info.get("subsets", {}).items():
            vals = [r.get("forget_subsets", {}).get(k, {}).get("forces_mae") for r in sparse]
            if all(v is not None for v in vals) and full.get("forget_subsets", {}).get(k):
                numbers += (
                    f"; {desc}: sparse {fmt(min(vals))}-{fmt(max(vals))} vs full "
                    f"{fmt(full['forget_subsets'][k]['forces_mae'])} (base "
                    f"{fmt(info['base']['forget_subsets'][k]['forces_mae'])})"
                )
        out.append(
            (
                "forgetting (F MAE on the original level of theory) of sparse < full fine-tuning's",
                "met" if ok else "MISSED",
                numbers,
            )
        )
    mace_full = rows.get("mace-full")
    if full and mace_full and full.get("epoch_cpu_s") and mace_full.get("epoch_cpu_s"):
        ratio = full["epoch_cpu_s"] / mace_full["epoch_cpu_s"]
        out.append(
            (
                "sparseft full FT epoch <= mace_run_train's (ratio <= 1.0)",
                "met" if ratio <= GOAL_EPOCH_RATIO else "MISSED",
                f"CPU time per epoch {full['epoch_cpu_s']:.2f} s vs {mace_full['epoch_cpu_s']:.2f} s (ratio {ratio:.2f}); "
                f"wall {full['epoch_s']:.2f} s vs {mace_full['epoch_s']:.2f} s (ratio {full['epoch_s'] / mace_full['epoch_s']:.2f})",
            )
        )
    if full and full.get("epoch_cpu_s"):
        adapters = [r for r in rows.values() if r["family"] in ("sparse", "lora", "freeze") and r.get("epoch_cpu_s")]
        if adapters:
            worst = max(adapters, key=lambda r: r["epoch_cpu_s"])
            ratio = worst["epoch_cpu_s"] / full["epoch_cpu_s"]
            out.append(
                (
                    "adapters add <= 30% per step over full fine-tuning",
                    "met" if ratio <= GOAL_ADAPTER_OVERHEAD else "MISSED",
                    f"CPU time per epoch, slowest adapter: {worst['label']} {worst['epoch_cpu_s']:.2f} s vs full "
                    f"{full['epoch_cpu_s']:.2f} s (ratio {ratio:.2f}); all adapters "
                    f"{min(r['epoch_cpu_s'] for r in adapters) / full['epoch_cpu_s']:.2f}-{ratio:.2f}",
                )
            )
    return out


def settings_lines(info: dict, args) -> list[str]:
    task: Task = info["task"]
    b = task.budget
    main = [r for r in info["main"] if r.get("status") == "ok"]
    lines = [
        f"- base: {task.base_desc}; {info['base']['base_parameters']:,} parameters, "
        f"file {human_bytes(task.base_model.stat().st_size)}",
        f"- target data: {task.target_desc}",
        f"- main comparison: {info['main_n']} training structures (the first {info['main_n']} of the shuffled pool), "
        f"validation {info['base']['valid']['frames']}, test {info['base']['test']['frames']}; "
        f"{b['epochs']} epochs, batch size {b['batch_size']}, seed 0",
        f"- forgetting set: {task.forget_desc}; evaluated with the base model's own E0s put back",
        "- E0s (both tools, identical): the base's E0s corrected by least squares on the training file "
        "(sparseft's `E0s: estimated`, computed once per training file and passed explicitly: "
        "`data.E0s` to sparseft, `--E0s` to mace_run_train): "
        + ", ".join(f"Z={z}: {v:.4f} eV" for z, v in sorted(info["e0s_main"].items())),
        f"- optimiser (both tools): Adam, lr {b['lr']:g} (from scratch: {SCRATCH_LR:g}), constant "
        "(sparseft `scheduler: constant`; mace's default ReduceLROnPlateau has patience 50 epochs, so it never "
        "lowers the lr within this budget), no weight decay, gradient clipping 10, no EMA, no early stopping; "
        f"loss = {b['energy_weight']:g} x MSE(energy per atom) + {b['forces_weight']:g} x MSE(force components) "
        "(mace `--loss weighted`, sparseft's loss, same formula); the saved model is the epoch with the lowest "
        "validation loss in both tools (sparse: among epochs after the support was fixed)",
        "- mace_run_train is given `--foundation_model` = a copy of the base file whose E0 buffer already holds "
        "these E0s (weights untouched): mace 0.3.16's `load_foundations_elements` copies every foundation buffer of "
        "matching shape into the model it built from `--E0s`, so with `--foundation_model_elements True` (needed to "
        "keep all of the foundation's elements for the forgetting set) the foundation's E0s silently replace "
        "`--E0s`. `--multiheads_finetuning False` (naive fine-tuning; no replay data).",
        f"- sparse: `l1: {SPARSE_L1}`, `l1_schedule: warmup`, `retrain_fraction: 0.3`, `target_density` as named; "
        "LoRA: default selector (every matrix block), `scale: 1`; freeze: `select: {kinds: [readout]}` and "
        "`select: {layers: [last]}`; scratch: the base architecture re-initialised (seed 0) with the base's "
        "E0s/scale/shift, trained in full",
    ]
    if main:
        sft = next(
            (r for r in main if r["method"] == "sparse-3"), next((r for r in main if r["tool"] == "sparseft"), None)
        )
        mace = next(
            (r for r in main if r["method"] == "mace-full"), next((r for r in main if r["tool"] == "mace"), None)
        )
        if mace:
            lines += [
                "",
                "mace_run_train command (naive fine-tuning; the other mace rows add `--freeze N` or "
                "`--lora True --lora_rank R`, as named):",
                "",
                "```",
                mace["command"],
                "```",
            ]
        if sft:
            import yaml

            lines += [
                "",
                f"sparseft recipe ({sft['label']}; run as `sparseft.run.run(recipe_from_dict(...))` "
                "in a subprocess, the other rows change `adapters` / `train`):",
                "",
                "```yaml",
                yaml.safe_dump(sft["recipe"], sort_keys=False).rstrip(),
                "```",
            ]
    return lines


def write_report(state: dict, args, meta: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.name}.md"
    discussion = ""
    if path.is_file():
        text = path.read_text()
        if DISCUSSION_START in text and DISCUSSION_END in text:
            discussion = text.split(DISCUSSION_START, 1)[1].split(DISCUSSION_END, 1)[0].strip("\n")
    images = plots(state, out_dir, args.name)
    m = meta["machine"]
    lines = [
        f"# sparseft vs mace_run_train fine-tuning{' (quick run)' if args.quick else ''}",
        "",
        f"Written by `benchmarks/run.py` on {meta['date']} (`{meta['command']}`).",
        "",
    ]
    if meta.get("history"):
        lines += ["Invocations into this work dir (each reuses the runs cached by the ones before):", ""]
        lines += [
            f"{i}. {h['date']}, {h['minutes']} min, {h['runs']} training runs: `{h['command']}`"
            + (f" ({h['note']})" if h.get("note") else "")
            for i, h in enumerate(meta["history"], 1)
        ]
        lines.append("")
    lines += [
        f"- machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['memory']} RAM; shared with other jobs",
        f"- **every training process ran with exactly {m['threads']} torch thread** (OMP_NUM_THREADS={m['threads']}, "
        f"`torch.set_num_threads({m['threads']})` in sparseft's worker), one process at a time, "
        f"OMP_WAIT_POLICY={m['omp_wait_policy']}; load average (1 min) during the runs: "
        f"{meta['load_min']:.2f}-{meta['load_max']:.2f}",
        f"- software: python {m['python']}, "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items())
        + f"; sparseft: {meta['sparseft_source']} (repo HEAD {meta['git']['commit'][:12]} when the report was written)",
        f"- total wall time: {meta['total_s'] / 60:.1f} min for {meta['n_runs']} training runs, all invocations "
        f"({meta['train_s'] / 60:.1f} min wall and {meta['train_cpu_s'] / 60:.1f} min CPU in the training processes)",
        "",
        "How things are measured: test and forgetting errors are computed by this script for every final model "
        "(sparseft's `merged.model`, mace's `mace.model`) with one code path. *Changed* = weights that differ from the "
        "base's (exact comparison); *trainable* = what the optimiser updates (sparse: every selected entry, of which "
        "only the support survives; mace LoRA: from its log). *Epoch* = median over epochs of the interval between "
        "consecutive epoch log lines of the training process, read on its unbuffered stdout (training steps + one "
        "validation pass + checkpoint writing, in both tools): *CPU s* is the process's user + system CPU time "
        "(`/proc/PID/stat`) over that interval, *wall s* the clock time. The machine was shared with other jobs "
        "while this ran, so wall times vary run to run with the load, while CPU time per epoch (one thread, so it "
        "is the time the epoch would take on an idle core) is stable to about 2 %: ratios and goals use CPU "
        "time, wall ratios are given in brackets. Peak RSS: GNU `time -f %M` around the training process "
        "(includes start-up and the final evaluation). Adapter file: sparseft's `adapter/` directory "
        "(`adapter.safetensors` + `sparseft.json`); mace_run_train writes only whole models.",
        "",
    ]
    if images:
        lines += [f"![{img}]({img})" for img in images] + [""]
    lines += ["## Goals", "", "| data set | goal | status | numbers |", "|---|---|---|---|"]
    for name, info in state.items():
        if not info.get("main"):
            continue
        for goal, status, numbers in goals(info):
            lines.append(f"| {name} | {goal} | {status} | {numbers} |")
    lines += [
        "",
        DISCUSSION_START,
        discussion or "_(discussion: to be written after looking at the numbers)_",
        DISCUSSION_END,
        "",
    ]
    for name, info in state.items():
        if "skipped" in info:
            lines += [f"## {name}", "", info["skipped"], ""]
            continue
        if info.get("kind") == "heads":
            lines += heads_section(info) + [""]
            continue
        task = info["task"]
        lines += [f"## {name}: {task.title}", ""]
        lines += settings_lines(info, args)
        lines += ["", "### Main comparison", ""] + main_table(info)
        lt = lc_table(info)
        if lt:
            lines += [
                "",
                "### Learning curves",
                "",
                f"Best settings by validation force MAE in the main comparison: {', '.join(info.get('lc_methods', []))}. "
                "Smaller training sets are nested subsets of the pool; each gets at least "
                f"{task.budget['lc_min_steps']} optimiser steps (epochs raised accordingly), its own estimated E0s, "
                "and the same validation and test sets.",
                "",
            ] + lt
        lines.append("")
    write_atomic(path, "\n".join(lines))
    return path
