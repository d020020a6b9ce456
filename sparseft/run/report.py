"""The report step: adapter, merged model(s), history, sparsity, plots, metrics, summary."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ase.data import chemical_symbols

from .._compat import torch
from ..core.backend import backend_of
from ..files import write_file_atomically, write_text_atomically
from ..heads import split_heads
from ..io import save_adapter
from ..recipe import Recipe
from .setup import Setup
from .training import Trained


def sparsity_rows(adapted) -> list[dict]:
    """Changed entries per block with layer, kind, l and element: the interpretability map."""
    rows = []
    with torch.no_grad():
        for adapter, _, part in adapted.all_parts():
            nz = part.values().detach() != 0
            for block, start, stop in part.block_slices():
                rows.append(
                    {
                        "adapter": adapter,
                        "block": block.name,
                        "layer": block.layer,
                        "kind": block.kind,
                        "l": block.l,
                        "element": chemical_symbols[block.element] if block.element is not None else None,
                        "size": block.size,
                        "changed": int(nz[start:stop].sum()),
                    }
                )
    return rows


def density_summary(rows: list[dict]) -> dict:
    def group(key):
        out = {}
        for r in rows:
            k = str(key(r))
            c, s = out.get(k, (0, 0))
            out[k] = (c + r["changed"], s + r["size"])
        return {k: round(c / s, 6) for k, (c, s) in out.items()}

    return {
        "by_layer_kind": group(lambda r: f"{r['layer']}/{r['kind']}"),
        "by_l": group(lambda r: r["l"]),
        "by_element": group(lambda r: r["element"]),
    }


def _history_csv(history: list[dict]) -> str:
    if not history:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def write_outputs(
    recipe: Recipe, setup: Setup, trained: Trained, out_dir: Path, metrics: dict, parity_data: dict, rows: list, log
) -> None:
    """Report step: adapter, merged model(s), history, sparsity, plots, metrics (each atomically)."""
    state = trained.state
    from .. import plots

    adapted, heads = split_heads(setup.model)
    save_adapter(setup.model, out_dir / "adapter", overwrite=True, extra={"recipe": recipe.to_dict()})
    merged = adapted.merge()
    backend = backend_of(merged)
    write_file_atomically(out_dir / backend.merged_file, lambda tmp: backend.save_merged(merged, tmp))
    if heads:  # merged_with_heads.model (sparseft.Calculator) and merged_multihead.model (MACE tools)
        from ..export import write_head_models

        write_head_models(setup.model.merge(), out_dir, log)
    write_text_atomically(out_dir / "history.csv", _history_csv(state.history))
    write_text_atomically(out_dir / "sparsity.json", json.dumps(rows, indent=1))
    plots.learning_curves(
        state.history, out_dir / "learning_curves.png", support_fixed_epoch=trained.support_fixed_epoch
    )
    plots.parity_plots(parity_data, out_dir)
    if rows:  # nothing to map when only heads trained
        plots.sparsity_map(rows, out_dir / "sparsity_map.png", metrics["training_elements"])
    write_text_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=1))


def final_summary(metrics: dict) -> str:
    fmt = lambda v, s, k=1000: "-" if v is None else f"{v * k:{s}}"  # noqa: E731
    lines = []
    for name, m in metrics["splits"].items():
        z = metrics["base_zero_shot"][name]
        if m.get("forces_mae") is not None or m.get("energy_per_atom_mae") is not None:
            lines.append(
                f"{name:5s}  force MAE {fmt(m.get('forces_mae'), '.1f')} meV/Å "
                f"(base {fmt(z.get('forces_mae'), '.1f')}), rel. RMSE {fmt(m.get('forces_rel_rmse_percent'), '.1f', 1)}% "
                f"(base {fmt(z.get('forces_rel_rmse_percent'), '.1f', 1)}%)  "
                f"energy MAE {fmt(m.get('energy_per_atom_mae'), '.2f')} "
                f"meV/atom (base {fmt(z.get('energy_per_atom_mae'), '.2f')})"
            )
        for head in metrics.get("heads", []):
            h = head["name"]
            if head["kind"] == "energy" and (
                m.get(f"{h}.forces_mae") is not None or m.get(f"{h}.energy_per_atom_mae") is not None
            ):
                lines.append(
                    f"{name:5s}  [{h}] force MAE {fmt(m.get(f'{h}.forces_mae'), '.1f')} meV/Å "
                    f"(initial {fmt(z.get(f'{h}.forces_mae'), '.1f')})  energy MAE "
                    f"{fmt(m.get(f'{h}.energy_per_atom_mae'), '.2f')} meV/atom "
                    f"(initial {fmt(z.get(f'{h}.energy_per_atom_mae'), '.2f')})"
                )
            elif m.get(f"{h}.magmoms_mae") is not None:
                lines.append(
                    f"{name:5s}  [{h}] magnetic-moment MAE {fmt(m[f'{h}.magmoms_mae'], '.4f', 1)} μB "
                    f"({'per-element mean' if head['kind'] == 'magmom' else 'initial head'} "
                    f"{fmt(z.get(f'{h}.magmoms_mae'), '.4f', 1)} μB)"
                )
    if metrics.get("config_types"):
        from ..evaluation import config_type_table

        lines.append("errors per config_type:\n" + config_type_table(metrics["config_types"]))
    lines.append(
        f"changed {metrics['changed_parameters']} of {metrics['base_parameters']} weights "
        f"({metrics['reachable_parameters']} reachable from {' '.join(metrics['training_elements'])}; "
        f"density {metrics['density']:.4f} of the selected reachable ones); {metrics['wall_time_s']:.0f} s"
    )
    return "\n".join(lines)
