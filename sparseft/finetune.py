"""``sparseft finetune``: one recipe -> adapter, merged model, metrics, history and plots."""

from __future__ import annotations

import copy
import csv
import io
import json
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from ._compat import torch
from .data import DataError, Frames, Keys, attach_labels, label_counts, read_frames, split, to_atomic_data, validate
from .e0s import current_e0s, resolve_e0s, set_e0s
from .io import save_adapter, write_file_atomically
from .loading import load_base_model
from .model import wrap
from .predict import model_dtype
from .recipe import Recipe, RecipeError, save_recipe
from .train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from .train.losses import ErrorAccumulator
from .train.trainer import Trainer

OUTPUT_FILES = ("recipe.yaml", "adapter", "merged.model", "metrics.json", "history.csv", "sparsity.json",
                "learning_curves.png", "parity_energy.png", "parity_forces.png", "sparsity_map.png", "checkpoint")


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint."""


def _write_text(path: Path, text: str) -> None:
    write_file_atomically(path, lambda tmp: tmp.write_text(text))


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RecipeError("base.device: cuda requested but torch sees no GPU")
    return name


def load_base(recipe: Recipe):
    """The base model named by the recipe (``embedded`` -> the shipped mini-foundation)."""
    return load_base_model(recipe.base.model, dtype=recipe.base.dtype, device=_device(recipe.base.device),
                           head=recipe.base.head)


def _embedded_path(value: str | None) -> str | None:
    if value and value.startswith("embedded:"):
        from .embedded import DOMAIN_DIR

        return str(DOMAIN_DIR / value.split(":", 1)[1])
    return value


def load_splits(recipe: Recipe, zs: list[int]) -> dict[str, Frames]:
    """Read, label and validate every data file, then split; all checks happen before training."""
    d = recipe.data
    keys = Keys(d.energy_key, d.forces_key, d.stress_key, d.virials_key)

    def read(name):
        value = getattr(d, name)
        if not value:
            return None
        try:
            frames = attach_labels(read_frames(_embedded_path(value)), keys)
            validate(frames, zs, keys)
            return frames
        except DataError as exc:
            raise DataError(f"data.{name}: {exc}") from exc

    train, valid, test = read("train"), read("valid"), read("test")
    if test is None and d.test_fraction > 0:
        train, test = split(train, d.test_fraction, d.split_seed + 1)
    if valid is None and d.valid_fraction > 0:
        train, valid = split(train, d.valid_fraction, d.split_seed)
    splits = {"train": train}
    if valid is not None:
        splits["valid"] = valid
    if test is not None:
        splits["test"] = test
    counts = label_counts(train, keys)
    if counts["energy"] == 0 and counts["forces"] == 0:
        raise DataError(f"{train.path}: no frame has {keys.energy} or {keys.forces} labels (nor ASE calculator values)")
    return splits


def _prepare_output(directory: Path, *, resume: bool, overwrite: bool) -> None:
    if resume:
        if not has_checkpoint(directory):
            raise RecipeError(f"--resume: {directory} holds no checkpoint to resume from")
        return
    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{directory} is not empty; use --resume to continue its run or --overwrite to replace it")
        for name in OUTPUT_FILES:
            target = directory / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    directory.mkdir(parents=True, exist_ok=True)


def _predictions(model, dataset, batch_size: int, compute_stress: bool):
    """Per-frame energies per atom and all force components, reference and predicted."""
    from .data import loader

    acc = ErrorAccumulator()
    e_ref, e_pred, f_ref, f_pred = [], [], [], []
    for batch in loader(dataset, batch_size, shuffle=False):
        batch = batch.to(next(model.parameters()).device).to_dict()
        out = model(batch, training=False, compute_force=True, compute_stress=compute_stress)
        acc.add(batch, out)
        n = (batch["ptr"][1:] - batch["ptr"][:-1]).double()
        mask = batch["energy_weight"] > 0
        e_ref.append((batch["energy"].double() / n)[mask].detach().cpu())
        e_pred.append((out["energy"].double() / n)[mask].detach().cpu())
        fmask = batch["forces_weight"][batch["batch"]] > 0
        f_ref.append(batch["forces"][fmask].double().detach().cpu().reshape(-1))
        f_pred.append(out["forces"][fmask].double().detach().cpu().reshape(-1))
    cat = lambda xs: torch.cat(xs).numpy() if xs else np.zeros(0)  # noqa: E731
    return acc.metrics(), (cat(e_ref), cat(e_pred)), (cat(f_ref), cat(f_pred))


def sparsity_rows(adapted) -> list[dict]:
    """Changed entries per block with layer, kind, l and element: the interpretability map."""
    rows = []
    with torch.no_grad():
        for adapter, _, part in adapted.all_parts():
            nz = part.values().detach() != 0
            for block, start, stop in part.block_slices():
                rows.append({
                    "adapter": adapter, "block": block.name, "layer": block.layer, "kind": block.kind, "l": block.l,
                    "element": chemical_symbols[block.element] if block.element is not None else None,
                    "size": block.size, "changed": int(nz[start:stop].sum()),
                })
    return rows


def _density_summary(rows: list[dict]) -> dict:
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


def run(recipe: Recipe, *, resume: bool = False, overwrite: bool = False, quiet: bool = False, log=None) -> dict:
    """Run one fine-tune; returns the metrics dict that is also written to ``metrics.json``."""
    from . import plots

    if log is None:
        log = (lambda _msg: None) if quiet else print
    started = time.perf_counter()
    out_dir = Path(recipe.output.directory)
    _prepare_output(out_dir, resume=resume, overwrite=overwrite)

    base = load_base(recipe)
    zs = [int(z) for z in base.atomic_numbers]
    splits = load_splits(recipe, zs)
    if not resume:
        save_recipe(recipe, out_dir / "recipe.yaml")
    d = recipe.data
    keys = Keys(d.energy_key, d.forces_key, d.stress_key, d.virials_key)
    e0s = resolve_e0s(d.E0s, base, splits["train"], keys)
    log(f"base: {recipe.base.model} ({type(base).__name__}, {model_dtype(base)}); "
        + ", ".join(f"{k}: {len(v.atoms)} frames" for k, v in splits.items()))

    adapted = wrap(base, recipe.adapters)
    set_e0s(adapted.model, e0s)
    datasets = {k: to_atomic_data(v, adapted, keys) for k, v in splits.items()}
    has_stress = label_counts(splits["train"], keys)["stress"] > 0 and recipe.train.stress_weight > 0
    device = next(adapted.parameters()).device
    trainer = Trainer(adapted, datasets["train"], datasets.get("valid", []), recipe.train, device=device,
                      compute_stress=has_stress, log=log, progress=not quiet and sys.stderr.isatty())
    state = load_checkpoint(out_dir, trainer) if resume else None
    if state is not None:
        log(f"resuming after epoch {state.epoch} (step {state.step})")

    def on_interrupt(s):
        save_checkpoint(out_dir, trainer, s)
        raise Interrupted(f"interrupted at step {s.step}; checkpoint written to {out_dir / 'checkpoint'}; "
                          "continue with --resume")

    state = trainer.fit(state, on_epoch_end=lambda s: save_checkpoint(out_dir, trainer, s), on_interrupt=on_interrupt)
    trainer.load_best()
    adapted.eval()

    zero_shot = copy.deepcopy(base)  # the base before training, with the same E0s as the fine-tune
    set_e0s(zero_shot, e0s)
    metrics = {"splits": {}, "base_zero_shot": {}}
    batch = recipe.train.batch_size
    parity_data = None
    for name, dataset in datasets.items():
        tuned, e, f = _predictions(adapted, dataset, batch, has_stress)
        zero, e0, f0 = _predictions(zero_shot, dataset, batch, has_stress)  # same graphs: only weights differ
        metrics["splits"][name] = tuned
        metrics["base_zero_shot"][name] = zero
        if name == "test" or (parity_data is None and name == "valid") or (parity_data is None and name == "train"):
            parity_data = (name, e, f, e0, f0)
    rows = sparsity_rows(adapted)
    density = adapted.density()
    metrics.update({
        "trainable_parameters": adapted.num_trainable(),
        "changed_parameters": density["changed"],
        "selected_parameters": density["selected"],
        "base_parameters": sum(p.numel() for p in base.parameters()),
        "density": density["overall"],
        "density_summary": _density_summary(rows),
        "E0s": {chemical_symbols[z]: v for z, v in current_e0s(adapted.model).items()},
        "epochs": state.epoch,
        "steps": state.step,
        "best_epoch": state.best_epoch,
        "wall_time_s": time.perf_counter() - started,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })

    save_adapter(adapted, out_dir / "adapter", overwrite=True, extra={"recipe": recipe.to_dict()})
    merged = adapted.merge()
    write_file_atomically(out_dir / "merged.model", lambda tmp: torch.save(merged, tmp))
    _write_text(out_dir / "history.csv", _history_csv(state.history))
    _write_text(out_dir / "sparsity.json", json.dumps(rows, indent=1))
    plots.learning_curves(state.history, out_dir / "learning_curves.png")
    if parity_data is not None:
        name, (er, ep), (fr, fp), (_, e0p), (_, f0p) = parity_data
        plots.parity(er, ep, e0p, out_dir / "parity_energy.png", title=f"energy per atom ({name})", unit="eV/atom")
        plots.parity(fr, fp, f0p, out_dir / "parity_forces.png", title=f"force components ({name})", unit="eV/Å")
    plots.sparsity_map(rows, out_dir / "sparsity_map.png")
    _write_text(out_dir / "metrics.json", json.dumps(metrics, indent=1))
    log(_final_summary(metrics))
    return metrics


def _final_summary(metrics: dict) -> str:
    lines = []
    for name, m in metrics["splits"].items():
        z = metrics["base_zero_shot"][name]
        f, f0 = m.get("forces_mae"), z.get("forces_mae")
        e, e0 = m.get("energy_per_atom_mae"), z.get("energy_per_atom_mae")
        fmt = lambda v, s: "-" if v is None else f"{v * 1000:{s}}"  # noqa: E731
        lines.append(f"{name:5s}  force MAE {fmt(f, '.1f')} meV/Å (base {fmt(f0, '.1f')})  "
                     f"energy MAE {fmt(e, '.2f')} meV/atom (base {fmt(e0, '.2f')})")
    lines.append(f"changed {metrics['changed_parameters']} of {metrics['base_parameters']} weights "
                 f"(density {metrics['density']:.4f} of selected); {metrics['wall_time_s']:.0f} s")
    return "\n".join(lines)
