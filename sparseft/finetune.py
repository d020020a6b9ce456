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
from dataclasses import dataclass
from pathlib import Path

from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols

from ._compat import torch
from .blocks import blocks as catalogue
from .core.backend import backend_of
from .data import DataError, Frames, Keys, attach_labels, label_counts, read_frames, split, to_atomic_data, validate
from .e0s import current_e0s, resolve_e0s, set_e0s
from .elements import apply_spec, spec_for
from .files import write_file_atomically, write_text_atomically
from .fingerprint import fingerprint
from .heads import HeadedModel, split_heads
from .heads import setup as head_setup
from .io import save_adapter
from .isolated import ISOLATED_KEY, e0s_option, single_atom_warning, without_isolated
from .label_check import check_evaluation_sets, check_keys, check_placement
from .loading import HeadNotFoundError, ModelLoadError, load_base_model
from .model import reachable, wrap_extended
from .outputs import RECIPE_CHANGES, check_output, check_resumed_recipe, clear_outputs, record_changes, remove_temporary
from .predict import model_dtype
from .recipe import Recipe, RecipeError, save_recipe
from .train import distributed as ddp
from .train.checkpoint import has_checkpoint, load_checkpoint, remove_stale, save_checkpoint
from .train.trainer import Trainer
from .zero_shot import regression_warning, zero_shot_check


class Interrupted(Exception):
    """Training stopped by Ctrl-C after writing a checkpoint."""


def _device(name: str) -> str:
    from .devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise RecipeError(f"base.device: {exc}") from exc


def load_base(recipe: Recipe, device: str | None = None):
    """The base model named by the recipe (``embedded`` -> the shipped mini-foundation), on
    ``device`` (default: the recipe's ``base.device``)."""
    try:
        return load_base_model(
            recipe.base.model,
            dtype=recipe.base.dtype,
            device=device or _device(recipe.base.device),
            head=recipe.base.head,
        )
    except HeadNotFoundError as exc:
        raise HeadNotFoundError(f"base.head: {exc}") from exc
    except ModelLoadError as exc:
        raise ModelLoadError(f"base.model: {exc}") from exc


def _embedded_path(value: str | None) -> str | None:
    if value and value.startswith("embedded:"):
        from .embedded import DOMAIN_DIR

        return str(DOMAIN_DIR / value.split(":", 1)[1])
    return value


def foundation_keys(recipe: Recipe) -> Keys:
    d = recipe.data
    return Keys(d.energy_key, d.forces_key, d.stress_key, d.virials_key)


def added_elements(recipe: Recipe, base) -> list[int]:
    """Atomic numbers to add to the base: ``base.add_elements``, and with ``data.new_elements: add``
    every element of the data files that the base does not know."""
    zs = [int(z) for z in base.atomic_numbers]
    added = [SYMBOL_TO_Z[s] for s in recipe.base.add_elements]
    known = [s for s, z in zip(recipe.base.add_elements, added) if z in zs]
    if known:
        raise RecipeError(
            f"base.add_elements: {' '.join(known)} already in the base model ({' '.join(chemical_symbols[z] for z in zs)})"
        )
    if recipe.data.new_elements == "add":
        d = recipe.data
        paths = [p for name in ("train", "valid", "test") for p in _as_list(getattr(d, name))]
        for path in paths + list(d.evaluate.values()):
            for atoms in read_frames(_embedded_path(path)).atoms:
                added += [int(z) for z in set(atoms.numbers.tolist()) if z not in zs and z not in added]
    return sorted(added)


def _as_list(value) -> list:
    return [] if not value else value if isinstance(value, list) else [value]


def load_splits(recipe: Recipe, zs: list[int], log=None, cutoff: float | None = None) -> dict[str, Frames]:
    """Read, label and validate every data file, then split; all checks happen before training
    (``log`` hears the notes and warnings of :mod:`sparseft.label_check`; ``cutoff``: the
    model's, to refuse frames whose neighbour list would explode)."""
    d = recipe.data
    log = log or (lambda _msg: None)
    keys = foundation_keys(recipe)
    extra = head_setup.label_sets(recipe.heads, d.calculator_labels)
    foundation_set = [(keys, "data.")]
    head_sets = [(head_setup.label_keys(h), f"heads[{i}].") for i, h in enumerate(recipe.heads)]

    owners = head_setup.label_owners(keys, recipe.heads)

    def read_one(where, value):
        try:
            raw = read_frames(_embedded_path(value))
            frames = attach_labels(raw, keys, use_calculator=d.calculator_labels == "foundation", extra=extra)
            validate(frames, zs, keys, extra=extra, cutoff=cutoff)
            check_placement(frames, foundation_set + head_sets)
        except DataError as exc:
            raise DataError(f"data.{where}: {exc}") from exc
        e0s = {"data.E0s": d.E0s, **{f"heads[{i}].E0s": getattr(h, "E0s", None) for i, h in enumerate(recipe.heads)}}
        warning = single_atom_warning(f"data.{where}", frames, e0s, where.startswith("train"))
        if warning:
            log(warning)
        return raw, frames

    def read(where, value):
        if not value:
            return None
        if not isinstance(value, list):
            read_parts = [read_one(where, value)]
            raw, frames = read_parts[0][0].atoms, read_parts[0][1]
        else:
            read_parts = [read_one(f"{where}[{i}]", v) for i, v in enumerate(value)]  # e.g. new data + replay data
            raw = [a for r, _ in read_parts for a in r.atoms]
            parts = [p for _, p in read_parts]
            frames = Frames(
                " + ".join(p.path for p in parts),
                [a for p in parts for a in p.atoms],
                [i for p in parts for i in p.indices],
                [p.path for p in parts for _ in p.atoms],
            )
        train = where == "train"  # a key need only be in one file of a list (new data + replay)
        try:
            notes = check_keys(raw, frames, foundation_set + (head_sets if train else []), train=train)
        except DataError as exc:
            raise DataError(f"data.{where}: {exc}") from exc
        for i, (raw_part, part) in enumerate(read_parts):  # after the key checks: a misspelled key first
            try:
                head_setup.check_routing(raw_part, part, owners)  # a label trains one head
            except DataError as exc:
                name = where if len(read_parts) == 1 else f"{where}[{i}]"
                raise DataError(f"data.{name}: {exc}") from exc
        for note in notes:
            log(f"note: data.{where}: {note}")
        return frames

    train, valid, test = (read(name, getattr(d, name)) for name in ("train", "valid", "test"))
    isolated = train  # mace's IsolatedAtom frames leave every set before the split (sparseft.isolated)
    train, valid, test = (None if f is None else without_isolated(f) for f in (train, valid, test))
    held_out = {}  # split name -> the file its frames were held out of
    if test is None and d.test_fraction > 0:
        train, test = split(train, d.test_fraction, d.split_seed + 1)
        held_out["test"] = train.path
    if valid is None and d.valid_fraction > 0:
        train, valid = split(train, d.valid_fraction, d.split_seed)
        held_out["valid"] = train.path
    splits = {"train": train, ISOLATED_KEY: isolated}
    if valid is not None:
        splits["valid"] = valid
    if test is not None:
        splits["test"] = test
    for name, path in d.evaluate.items():
        splits[name] = read(f"evaluate.{name}", path)
    counts = label_counts(train, keys)
    has_any = counts["energy"] > 0 or counts["forces"] > 0
    for i, head in enumerate(recipe.heads):
        head_keys = head_setup.label_keys(head)
        if not head_keys.trains(label_counts(train, head_keys)):
            raise DataError(
                f"heads[{i}] ({head.name}): no training frame in {train.path} carries its labels "
                f"({' or '.join(str(k) for k in head_keys.wanted())}, nor ASE calculator values)"
            )
        has_any = True
    if not has_any:
        raise DataError(f"{train.path}: no frame has {keys.energy} or {keys.forces} labels (nor ASE calculator values)")
    check_evaluation_sets(splits, foundation_set + head_sets, held_out, log)
    return splits


def _with_replay(recipe: Recipe, train: Frames, base, e0s: dict, log) -> Frames:
    """The training frames followed by the replay frames of ``data.replay``."""
    from .replay import ReplayConfig, replay_frames

    zs = [int(z) for z in base.atomic_numbers]
    config = ReplayConfig.from_dict(recipe.data.replay)
    try:
        frames = replay_frames(config, train, base, e0s, foundation_keys(recipe), zs, _embedded_path, log)
    except DataError as exc:
        raise DataError(f"data.replay: {exc}") from exc
    return Frames(f"{train.path} + {frames.path}", train.atoms + frames.atoms, train.indices + frames.indices)


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


@dataclass
class Setup:
    """What the training step needs: the model, its datasets and loss weights."""

    base: torch.nn.Module
    splits: dict
    e0s: dict
    model: torch.nn.Module  # AdaptedModel, or a HeadedModel around it
    datasets: dict
    initial_heads: list
    weights: dict
    has_stress: bool
    derivative_heads: list
    support_fixed_epoch: float | None = None  # set by the training step (for the learning curves)


def run(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    log=None,
    accept_recipe_changes: bool = False,
) -> dict:
    """Run one fine-tune; returns the metrics dict that is also written to ``metrics.json``.

    Nothing is written before training starts, and a run that fails before its first checkpoint
    leaves nothing behind. ``resume`` refuses a recipe that differs from the saved one unless
    ``accept_recipe_changes`` (the differences are then recorded in ``recipe_changes.json``).
    Everything ``log`` receives also goes to ``train.log`` in the output directory (from the
    first checkpoint on: lines logged before it are written then).

    Under ``torchrun`` (``WORLD_SIZE > 1``) this process is one rank of a data-parallel run
    (:mod:`sparseft.train.distributed`): rank 0 alone logs, writes outputs and checkpoints and
    returns the metrics, the other ranks return ``{}``."""
    from .train_log import TrainLog

    dist, device = ddp.init_from_env(_device(recipe.base.device))
    main = dist is None or dist.is_main
    results = log or print  # the final results: shown with quiet too
    if log is None:
        log = (lambda _msg: None) if quiet else print
    out_dir = Path(recipe.output.directory)
    log = TrainLog(out_dir / "train.log", log, results=results) if main else _Silent()
    try:
        return _run(
            recipe,
            out_dir,
            resume=resume,
            overwrite=overwrite,
            quiet=quiet,
            log=log,
            accept_recipe_changes=accept_recipe_changes,
            dist=dist,
            device=device,
        )
    except Exception as exc:
        log.write(f"stopped: {type(exc).__name__}: {exc}")
        raise
    finally:
        log.close()
        if dist is not None:
            ddp.shutdown()


class _Silent:
    """The log of a rank other than 0: says nothing, writes nothing."""

    def __call__(self, message: str) -> None:
        pass

    def write(self, message: str) -> None:
        pass

    def result(self, message: str) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _run(
    recipe: Recipe,
    out_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    log,
    accept_recipe_changes: bool,
    dist=None,
    device=None,
) -> dict:
    """The steps of :func:`run`: checks, set-up, training, evaluation, report."""
    main = dist is None or dist.is_main
    started = time.perf_counter()
    changes = _check_output_once(
        out_dir, recipe, dist, resume=resume, overwrite=overwrite, accept=accept_recipe_changes
    )
    existed = out_dir.exists()
    setup = _set_up(recipe, log, device)
    try:
        state = _train(recipe, setup, out_dir, resume=resume, changes=changes, quiet=quiet, log=log, dist=dist)
    except BaseException:
        if main and not resume and not has_checkpoint(out_dir):  # never started: leave nothing behind
            shutil.rmtree(out_dir, ignore_errors=True) if not existed else clear_outputs(out_dir)
        raise
    if not main:
        return {}
    metrics, parity_data, rows = _evaluate(recipe, setup, state, log, quiet=quiet)
    metrics["wall_time_s"] = time.perf_counter() - started
    metrics["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics["zero_shot_check"] = zero_shot_check(metrics, state.history)
    _write_outputs(recipe, setup, state, out_dir, metrics, parity_data, rows, log)
    log.result(_final_summary(metrics))  # results: printed with --quiet too
    if metrics["zero_shot_check"]["worse_than_zero_shot"]:
        log.result(regression_warning(metrics["zero_shot_check"]))
    return metrics


def _check_output_once(out_dir: Path, recipe: Recipe, dist, *, resume: bool, overwrite: bool, accept: bool) -> list:
    """The output folder and resumed-recipe checks, on rank 0 alone (they probe the folder by
    writing); every rank raises the same error. Returns the accepted recipe changes."""
    changes, error = [], None
    if dist is None or dist.is_main:
        try:
            check_output(out_dir, resume=resume, overwrite=overwrite)
            changes = check_resumed_recipe(out_dir, recipe, accept=accept) if resume else []
        except Exception as exc:
            if dist is None:
                raise
            error = exc
    if dist is not None:
        kind, message, changes = ddp.broadcast_from_main(
            dist, (type(error) if error else None, str(error) if error else None, changes)
        )
        if error is not None:
            raise error
        if kind is not None:
            raise kind(message)
    return changes


def _set_up(recipe: Recipe, log, device: str | None = None) -> Setup:
    """Data step: the base model, validated splits, E0s, the adapted model with its heads, datasets."""
    base = load_base(recipe, device)
    added = added_elements(recipe, base)
    splits = load_splits(recipe, [int(z) for z in base.atomic_numbers] + added, log=log, cutoff=float(base.r_max))
    keys = foundation_keys(recipe)
    adapted, e0s = _adapt(recipe, base, splits, added, log)
    base = adapted.base  # with its element table extended when elements were added
    log(
        f"base: {recipe.base.model} ({type(base).__name__}, {model_dtype(base)}); "
        + (f"added {' '.join(chemical_symbols[z] for z in added)}; " if added else "")
        + ", ".join(f"{k}: {len(v.atoms)} frames" for k, v in splits.items())
    )
    set_e0s(adapted.model, e0s)
    heads = head_setup.build_heads(
        recipe.heads,
        adapted.base,
        splits["train"],
        lambda option, head_keys: resolve_e0s(option, base, splits["train"], head_keys, new=added, log=log),
    )
    model = HeadedModel(adapted, heads) if heads else adapted
    head_keys = [(h.name, head_setup.label_keys(h)) for h in recipe.heads]
    datasets = {
        k: to_atomic_data(v, model, keys, heads=head_keys, config_type_weights=recipe.data.config_type_weights)
        for k, v in splits.items()
    }
    if heads:
        head_setup.standardize_inputs(model, datasets["train"], recipe.train.batch_size)
    initial_heads = copy.deepcopy(heads)  # the zero-shot baseline of each head
    energy_counts = {
        None: label_counts(splits["train"], keys),
        **{
            h.name: label_counts(splits["train"], head_setup.label_keys(h))
            for h in recipe.heads
            if h.property == "energy"
        },
    }
    weights = head_setup.task_weights(recipe.heads, recipe.train)
    stress_tasks = ["stress" if head is None else f"{head}.stress" for head in energy_counts]
    # stress only when some task with stress labels trains on them
    has_stress = any(
        weights[task] > 0 and counts["stress"] > 0 for task, counts in zip(stress_tasks, energy_counts.values())
    )
    if not has_stress:
        weights.update({task: 0.0 for task in stress_tasks})
    log(head_setup.routing_summary(head_setup.label_owners(keys, recipe.heads), splits["train"], weights))
    derivative_heads = head_setup.differentiated_heads(
        weights, {h: c["stress"] for h, c in energy_counts.items()}, {h: c["forces"] for h, c in energy_counts.items()}
    )
    return Setup(base, splits, e0s, model, datasets, initial_heads, weights, has_stress, derivative_heads)


def _adapt(recipe: Recipe, base, splits: dict, added: list[int], log):
    """The adapted model and the E0s. The element table is extended first; the E0s come from the
    new data alone; the replay frames (chosen and labelled by the extended base) then join the
    training split, and only then are the adapters attached: per-element weights of elements in
    neither the training nor the replay structures get no gradient, so every adapter leaves them
    out (``train_elements``)."""
    spec = spec_for(base, added, init=recipe.base.element_init) if added else None
    extended = apply_spec(base, spec) if spec is not None else base
    keys = foundation_keys(recipe)
    e0_option = e0s_option(splits.pop(ISOLATED_KEY), keys.energy, recipe.data.E0s, log)
    e0s = resolve_e0s(e0_option, extended, splits["train"], keys, new=added, log=log)
    if recipe.data.replay is not None:
        splits["train"] = _with_replay(recipe, splits["train"], extended, e0s, log)
    adapted = wrap_extended(
        extended,
        recipe.adapters,
        fingerprint(base),
        spec,
        copy_model=spec is None,  # apply_spec made a copy already
        allow_empty=bool(recipe.heads),
        train_elements=training_elements(splits),
    )
    return adapted, e0s


def _train(recipe: Recipe, setup: Setup, out_dir: Path, *, resume: bool, changes: list, quiet: bool, log, dist=None):
    """Training step: the trainer, resumed from the checkpoint when asked; checkpoints every epoch
    (the first one also saves ``recipe.yaml``: from then on the run exists); in a data-parallel
    run rank 0 alone writes."""
    main = dist is None or dist.is_main
    model = setup.model
    device = next(model.parameters()).device
    trainer = Trainer(
        model,
        setup.datasets["train"],
        setup.datasets.get("valid", []),
        recipe.train,
        device=device,
        compute_stress=setup.has_stress,
        log=log,
        progress=main and not quiet and sys.stderr.isatty(),
        task_weights=setup.weights,
        derivative_heads=setup.derivative_heads,
        frame_names=setup.splits["train"].names(),
        progress_seconds=None if quiet or not main or sys.stderr.isatty() else recipe.output.progress_seconds,
        dist=dist,
    )
    if trainer.fix_at_step is not None:
        setup.support_fixed_epoch = trainer.fix_at_step / trainer.steps_per_epoch
    state = _start(out_dir, trainer, recipe, resume=resume, changes=changes, log=log, dist=dist)
    if resume:
        log.start()
    if dist is not None:
        log(
            f"data-parallel: {dist.world_size} ranks ({ddp.backend_for(device)}), global batch {recipe.train.batch_size}"
        )

    def checkpoint(s):
        if not main:
            return
        if not has_checkpoint(out_dir):  # the run's first checkpoint
            out_dir.mkdir(parents=True, exist_ok=True)
            save_recipe(recipe, out_dir / "recipe.yaml")
            log.start()
        save_checkpoint(out_dir, trainer, s)

    def on_interrupt(s):
        checkpoint(s)
        raise Interrupted(
            f"interrupted at step {s.step}; checkpoint written to {out_dir / 'checkpoint'}; continue with --resume"
        )

    state = trainer.fit(state, on_epoch_end=checkpoint, on_interrupt=on_interrupt)
    if not main:
        return state
    trainer.load_best()
    model.eval()
    return state


def _start(out_dir: Path, trainer: Trainer, recipe: Recipe, *, resume: bool, changes: list, log, dist=None):
    """The state training starts from: the checkpoint (--resume: accepted recipe changes are
    recorded, leftovers of killed writes deleted), or a fresh one (--overwrite: the earlier
    run's outputs are deleted now, once the model and data are known to be good). Every rank
    reads the checkpoint; rank 0 alone deletes or records."""
    main = dist is None or dist.is_main
    if not resume:
        if main and out_dir.exists():
            clear_outputs(out_dir)
        return None
    state = load_checkpoint(out_dir, trainer)
    ddp.barrier(dist)  # every rank has read the checkpoint before rank 0 tidies the folder
    if not main:
        return state
    remove_stale(out_dir, count=recipe.train.keep_checkpoints)
    remove_temporary(out_dir)
    if changes:
        state.done = trainer.finished(state)  # e.g. more epochs for a finished run
        record_changes(out_dir, recipe, changes, state)
        log(f"recipe changes accepted and recorded in {out_dir / RECIPE_CHANGES}: {'; '.join(changes)}")
    log(f"resuming after epoch {state.epoch} (step {state.step})" + (f" on {dist.world_size} ranks" if dist else ""))
    return state


def _zero_shot(setup: Setup) -> torch.nn.Module:
    """The base before training with the same E0s as the fine-tune, and each head as it started
    (an energy head = the foundation with its own E0s; a moment head = per-element means)."""
    zero_shot = copy.deepcopy(setup.base)
    set_e0s(zero_shot, setup.e0s)
    return HeadedModel(zero_shot, setup.initial_heads) if setup.initial_heads else zero_shot


def _evaluate(recipe: Recipe, setup: Setup, state, log, quiet: bool = False):
    """Evaluation step: metrics of every split (train only with ``output.evaluate_train``) for the
    fine-tune and the zero-shot base, per config_type too, parity data, the sparsity rows; a
    progress bar on a terminal, else a progress line every ``output.progress_seconds``."""
    from .evaluation import final_metrics
    from .train_log import Progress

    def progress(total, what, unit=""):
        return Progress(total, what, unit=unit, log=log, seconds=recipe.output.progress_seconds, quiet=quiet)

    adapted, heads = split_heads(setup.model)
    metrics, parity_data = final_metrics(
        setup.model,
        _zero_shot(setup),
        setup.datasets,
        setup.splits,
        batch_size=recipe.train.batch_size,
        compute_stress=setup.has_stress,
        include_train=recipe.output.evaluate_train,
        log=log,
        progress=progress,
    )
    rows = sparsity_rows(adapted)
    density = adapted.density()
    metrics.update(
        {
            "trainable_parameters": setup.model.num_trainable(),
            "head_parameters": sum(p.numel() for h in heads.values() for p in h.parameters() if p.requires_grad),
            "heads": [h.spec() for h in heads.values()],
            "loss_weights": setup.weights,
            "changed_parameters": density["changed"],
            "selected_parameters": density["selected"],
            "base_parameters": sum(p.numel() for p in setup.base.parameters()),
            "reachable_parameters": sum(b.size for b in reachable(catalogue(setup.base), adapted.train_elements)),
            "training_elements": [chemical_symbols[z] for z in training_elements(setup.splits)],
            "density_of": "selected weights the training data reaches (shared blocks and the per-element blocks "
            "of the training elements, those of the replay structures included)",
            "added_elements": [chemical_symbols[z] for z in (adapted.elements.added if adapted.elements else ())],
            "density": density["overall"],
            "density_summary": _density_summary(rows),
            "E0s": {chemical_symbols[z]: v for z, v in current_e0s(adapted.model).items()},
            "epochs": state.epoch,
            "steps": state.step,
            "best_epoch": state.best_epoch,
        }
    )
    return metrics, parity_data, rows


def training_elements(splits: dict) -> list[int]:
    """Atomic numbers present in the training split, replay frames included (what the training
    data can reach)."""
    return sorted({int(z) for atoms in splits["train"].atoms for z in atoms.numbers})


def _write_outputs(
    recipe: Recipe, setup: Setup, state, out_dir: Path, metrics: dict, parity_data: dict, rows: list, log
) -> None:
    """Report step: adapter, merged model(s), history, sparsity, plots, metrics (each atomically)."""
    from . import plots

    adapted, heads = split_heads(setup.model)
    save_adapter(setup.model, out_dir / "adapter", overwrite=True, extra={"recipe": recipe.to_dict()})
    merged = adapted.merge()
    backend = backend_of(merged)
    write_file_atomically(out_dir / backend.merged_file, lambda tmp: backend.save_merged(merged, tmp))
    if heads:  # merged_with_heads.model (sparseft.Calculator) and merged_multihead.model (MACE tools)
        from .export import write_head_models

        write_head_models(setup.model.merge(), out_dir, log)
    write_text_atomically(out_dir / "history.csv", _history_csv(state.history))
    write_text_atomically(out_dir / "sparsity.json", json.dumps(rows, indent=1))
    plots.learning_curves(state.history, out_dir / "learning_curves.png", support_fixed_epoch=setup.support_fixed_epoch)
    plots.parity_plots(parity_data, out_dir)
    if rows:  # nothing to map when only heads trained
        plots.sparsity_map(rows, out_dir / "sparsity_map.png", metrics["training_elements"])
    write_text_atomically(out_dir / "metrics.json", json.dumps(metrics, indent=1))


def _final_summary(metrics: dict) -> str:
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
        from .evaluation import config_type_table

        lines.append("errors per config_type:\n" + config_type_table(metrics["config_types"]))
    lines.append(
        f"changed {metrics['changed_parameters']} of {metrics['base_parameters']} weights "
        f"({metrics['reachable_parameters']} reachable from {' '.join(metrics['training_elements'])}; "
        f"density {metrics['density']:.4f} of the selected reachable ones); {metrics['wall_time_s']:.0f} s"
    )
    return "\n".join(lines)
