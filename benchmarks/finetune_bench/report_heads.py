"""The magnetic-moment section of the report (data set 3, sparseft only): its settings and one
table of moment errors, forgetting of the xTB head, weights and time per trunk setting."""

from __future__ import annotations

from .config import HEAD_NAME
from .formatting import fmt, human_bytes, pct


def heads_section(info: dict) -> list[str]:
    task = info["task"]
    b, meta, base = task.budget, task.extra["meta"], info["base"]
    runs = info["runs"]
    ok = [r for r in runs if r.get("status") == "ok"]
    replay = task.extra["replay_source"]
    lines = [f"## {task.name}: {task.title}", ""]
    lines += [
        f"- base: {task.base_desc}; {base['base_parameters']:,} parameters, file "
        f"{human_bytes(task.base_model.stat().st_size)}",
        f"- target data: {task.target_desc}",
        f"- xTB replay: `{replay.name}` ({meta['n_replay']} GFN2-xTB frames"
        + (f", {meta['replay_isolated']} of them isolated atoms" if meta.get("replay_isolated") else "")
        + "; keys energy_xtb / forces_xtb) listed in `data.train` next to the moment file; each frame trains on "
        "the labels it has (moments, or xTB energy and forces for the foundation head); the row marked "
        '"no xTB replay" trains on the moment file alone',
        f"- forgetting set: {task.forget_desc}; the foundation (xTB) head of each run's `merged.model` (the trunk "
        "after fine-tuning, without the moment head), base E0s, same code path as the other data sets",
        f"- head (every row): `{HEAD_NAME}`, collinear (`kind: magmom`): an MLP ({b['hidden']} hidden) on the "
        "standardised invariant node features plus a per-element offset, `constrain_total: true` (moments shifted "
        "to sum to 2S), trained in full (outside any L1 penalty); it starts at the per-element mean of the training "
        "moments, which is the baseline row (its test error as sparseft reports it in `metrics.json` "
        f'`base_zero_shot.test["{HEAD_NAME}.magmoms_mae"]`)',
        f"- training (every row): the settings of `recipes/hco-magmom-head.yaml` with {b['epochs']} epochs: Adam, "
        f"lr {b['lr']:g}, {b['scheduler']} schedule, EMA {b['ema_decay']:g}, batch size {b['batch_size']}, seed 0; "
        f"loss = {b['magmoms_weight']:g} x MSE(moments, μB²) + {b['energy_weight']:g} x MSE(xTB energy per atom) + "
        f"{b['forces_weight']:g} x MSE(xTB forces), each over the frames that carry the label; the foundation's E0s; "
        "the saved model is the epoch with the lowest validation loss (the validation file has moments only)",
        f"- trunk: head only = `adapters: []` (frozen trunk); sparse: `l1: {b['l1']:g}`, `l1_schedule: warmup`, "
        "`retrain_fraction: 0.3`, `target_density` as named; LoRA: default selector, `scale: 1`; full: every weight",
        "- **sparseft only**: mace_run_train 0.3.16 has no magnetic-moment head (its multi-head fine-tuning adds "
        "energy / force / stress heads for other levels of theory), so this data set compares sparseft's trunk "
        "settings with one another, not the two tools",
        "- moment errors: sparseft's own (`metrics.json`, over every atom of the test / validation file, μB); "
        "*trunk trainable* = what the optimiser updates besides the head, *trunk changed* = weights of "
        "`merged.model` that differ from the base's (exact comparison); *epoch*: as above (CPU time of the "
        "training process between epoch log lines; one thread)",
    ]
    sample = next((r for r in ok if r["method"] == "sparse-3"), ok[0] if ok else None)
    if sample:
        import yaml

        lines += [
            "",
            f"sparseft recipe ({sample['label']}; the other rows change `adapters` / `train`, and the "
            "no-replay row drops the second training file):",
            "",
            "```yaml",
            yaml.safe_dump(sample["recipe"], sort_keys=False, allow_unicode=True).rstrip(),
            "```",
        ]
    lines += ["", "### Trunk settings under the moment head", ""] + heads_table(info)
    return lines


def heads_table(info: dict) -> list[str]:
    base = info["base"]
    ok = [r for r in info["runs"] if r.get("status") == "ok"]
    bp = base["base_parameters"]
    baseline = {
        name: sorted({round(r["moments"][f"{name}_baseline"][q], 6) for r in ok})
        for name in ("test", "valid")
        for q in ("mae",)
    }
    lines = [
        "| trunk | xTB replay | trunk trainable | trunk changed | head parameters | test moment MAE (μB) | "
        "test moment RMSE (μB) | valid moment MAE (μB) | xTB forgetting F MAE (meV/Å, base "
        f"{fmt(base['forget']['forces_mae'])}) | xTB forgetting E MAE (meV/atom, base "
        f"{fmt(base['forget']['energy_mae'], spec='.2f')}) | best epoch | epoch CPU s (wall s) | peak RSS (MB) | "
        "adapter file | run wall (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if ok:
        m = ok[0]["moments"]
        lines.append(
            f"| per-element mean (the head before training) | - | 0 | 0 | - | {m['test_baseline']['mae']:.3f} | "
            f"{m['test_baseline']['rmse']:.3f} | {m['valid_baseline']['mae']:.3f} | {fmt(base['forget']['forces_mae'])} | "
            f"{fmt(base['forget']['energy_mae'], spec='.2f')} | - | - | - | - | - |"
        )
    for r in info["runs"]:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['label']} | {'yes' if r.get('replay') else 'no'} | FAILED (rc {r.get('rc')}) |" + " |" * 12
            )
            continue
        m = r["moments"]
        lines.append(
            f"| {r['label']} | {'yes' if r['replay'] else 'no'} | {r['trunk_trainable_parameters']:,} "
            f"({pct(r['trunk_trainable_parameters'] / bp, 1)}) | {r['changed_parameters']:,} "
            f"({pct(r['changed_parameters'] / bp)}) | {r['head_parameters']:,} | **{m['test']['mae']:.3f}** | "
            f"{m['test']['rmse']:.3f} | {m['valid']['mae']:.3f} | {fmt(r['forget']['forces_mae'])} | "
            f"{fmt(r['forget']['energy_mae'], spec='.2f')} | {r.get('best_epoch', '-')}/{r['epochs']} | "
            f"{r['epoch_cpu_s']:.2f} ({r['epoch_s']:.2f}) | {r['peak_rss_mb']:.0f} | "
            f"{human_bytes(r['adapter_bytes'])} | {r['wall_s']:.0f} |"
        )
    if any(len(v) > 1 for v in baseline.values()):
        lines += [
            "",
            "Note: the runs report different per-element-mean baselines "
            f"({'; '.join(f'{k}: {v}' for k, v in baseline.items())}); the first run's is shown.",
        ]
    if ok:
        lines += [
            "",
            f"{len(ok)} runs, {sum(r['wall_s'] for r in ok) / 60:.1f} min wall and "
            f"{sum(r['cpu_user_s'] + r['cpu_sys_s'] for r in ok) / 60:.1f} min CPU in the training processes.",
        ]
    return lines
