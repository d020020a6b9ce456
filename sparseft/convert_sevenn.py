"""``sparseft convert-sevenn-args``: a sevenn training input (``input.yaml``, e.g. the one
``sevenn preset fine_tune`` prints) -> the equivalent sparseft recipe, plus what could not be
mapped.

The YAML is read here (sevenn is not imported). sevenn's defaults are applied where the user
left a key out (sevenn 0.13's ``_const.DEFAULT_TRAINING_CONFIG`` / ``DEFAULT_DATA_CONFIG``):
a missing ``force_loss_weight`` is sevenn's 0.1, not sparseft's. Every key is either mapped,
or named in a note (``not mapped: ...``): the architecture keys of ``model`` in one note (the
architecture comes from the checkpoint), pure bookkeeping keys (checkpoint frequency, error
tables, logging) in one note, everything else one note each. sevenn fine-tunes every weight,
so the adapter is ``method: full``.

Paths (data files, a checkpoint file) are read relative to the input file's folder, where sevenn
is usually run, and written relative to the recipe's folder (``-o``; the current folder when
the recipe is printed).
"""

from __future__ import annotations

import glob
import math
import os
from pathlib import Path

# 1 eV/Å³ in kbar: sevenn's stress loss is in kbar, sparseft's stress in eV/Å³ (ASE's unit)
KBAR_PER_EV_A3 = 1602.1766208

# sevenn 0.13's defaults (sevenn/_const.py) for the keys that change the recipe
SEVENN_TRAIN_DEFAULTS = {
    "random_seed": 1,
    "epoch": 300,
    "loss": "mse",
    "optimizer": "adam",
    "scheduler": "exponentiallr",
    "force_loss_weight": 0.1,
    "stress_loss_weight": 1e-6,
    "is_train_stress": True,
    "train_shuffle": True,
}
SEVENN_BATCH_SIZE = 6

# shipped checkpoints (sevenn's names, lower case, as sevenn.util.pretrained_name_to_path reads them)
SHIPPED = {
    "sevennet-0": "sevennet:7net-0",
    "7net-0": "sevennet:7net-0",
    "sevennet-0_11july2024": "sevennet:7net-0",
    "7net-0_11july2024": "sevennet:7net-0",
    "sevennet-0_11jul2024": "sevennet:7net-0",
    "7net-0_11jul2024": "sevennet:7net-0",
    "sevennet-0_22may2024": "sevennet:7net-0-22may2024",
    "7net-0_22may2024": "sevennet:7net-0-22may2024",
    "sevennet-l3i5": "sevennet:7net-l3i5",
    "7net-l3i5": "sevennet:7net-l3i5",
    "sevennet-mf-0": "sevennet:7net-mf-0",
    "7net-mf-0": "sevennet:7net-mf-0",
}
NOT_SUPPORTED = {  # sevenn names sparseft cannot load (multi-fidelity, or not in the wheel)
    name: why
    for stem, why in (
        ("mf-ompa", "not shipped in the sevenn wheel (sevenn downloads it): give the .pth file's path"),
        ("omat", "not shipped in the sevenn wheel (sevenn downloads it): give the .pth file's path"),
        ("omni", "not shipped in the sevenn wheel (sevenn downloads it): give the .pth file's path"),
        ("omni-i8", "not shipped in the sevenn wheel (sevenn downloads it): give the .pth file's path"),
        ("omni-i12", "not shipped in the sevenn wheel (sevenn downloads it): give the .pth file's path"),
    )
    for name in (f"sevennet-{stem}", f"7net-{stem}")
}

# model: the architecture; it comes from the checkpoint (sevenn requires these to match it)
ARCHITECTURE = {
    "chemical_species",
    "cutoff",
    "channel",
    "is_parity",
    "lmax",
    "lmax_edge",
    "lmax_node",
    "num_convolution_layer",
    "irreps_manual",
    "weight_nn_hidden_neurons",
    "radial_basis",
    "cutoff_function",
    "act_gate",
    "act_scalar",
    "act_radial",
    "self_connection_type",
    "interaction_type",
    "conv_denominator",
    "use_bias_in_linear",
    "readout_as_fcn",
    "readout_fcn_hidden_neurons",
    "readout_fcn_activation",
    "_normalize_sph",
    "cuequivariance_config",
    "use_flash_tp",
    "use_oeq",
    "use_modal_node_embedding",
    "use_modal_self_inter_intro",
    "use_modal_self_inter_outro",
    "use_modal_output_block",
}
# bookkeeping without a sparseft effect (sevenn's checkpoint frequency, logs, data caching)
NO_EFFECT = {
    "train": {"per_epoch", "error_record", "csv_log", "num_workers", "use_testset"},
    "data": {
        "save_dataset_path",
        "save_by_label",
        "save_by_train_valid",
        "preprocess_num_cores",
        "compute_statistics",
        "dataset_type",
    },
}


class SevennInputError(ValueError):
    """An input file that is not a sevenn training input (one line)."""


def _num(where: str, value, kind=float):
    """``value`` as ``kind`` (int or float), or an error naming the key."""
    if isinstance(value, bool):
        raise SevennInputError(f"{where}: expected a number, got {value!r}")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SevennInputError(
            f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}"
        ) from None
    if kind is int and isinstance(value, float) and value != number:
        raise SevennInputError(f"{where}: expected an integer, got {value!r}")
    return number


def _model_name(value, base_dir: Path, notes: list[str]) -> str:
    text = str(value)
    key = text.lower()
    if key in SHIPPED:
        return SHIPPED[key]
    if key in NOT_SUPPORTED:
        notes.append(f"train.continue.checkpoint={text!r}: {NOT_SUPPORTED[key]}; base.model needs editing")
        return text
    return _path(text, base_dir)


def _path(text: str, base_dir: Path) -> str:
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else (base_dir / path))


def _files(key: str, value, base_dir: Path, notes: list[str], modalities: list | None = None) -> list[str]:
    """The files of a sevenn ``load_*_path`` value (a path, a list of paths or globs, or
    multi-modal ``{data_modality, file_list: [{file: ...}]}`` entries, whose modalities are
    added to ``modalities``), absolute."""
    entries = value if isinstance(value, list) else [value]
    files = []
    for entry in entries:
        if isinstance(entry, dict):
            modality = entry.get("data_modality")
            if modalities is not None and modality is not None:
                modalities.append(str(modality))
            if entry.get("data_weight") is not None:
                notes.append(f"data.{key}: data_weight of data_modality={modality!r}: no sparseft equivalent")
            for item in entry.get("file_list") or []:
                files.extend(_files(key, item.get("file") if isinstance(item, dict) else item, base_dir, []))
            continue
        if entry is None:
            continue
        path = _path(str(entry), base_dir)
        if glob.has_magic(path):  # sevenn expands globs; sparseft reads plain file names
            matches = sorted(glob.glob(path))
            if matches:
                files.extend(matches)
                continue
            notes.append(f"data.{key}: {entry!r} matches no file now; kept as written (sparseft does not expand globs)")
        if path.endswith((".pt", ".sevenn_data")) or "structure_list" in os.path.basename(path):
            notes.append(
                f"data.{key}: {entry!r} is a sevenn graph/structure_list file; sparseft reads ASE files "
                "(extxyz): give the structures' file"
            )
        files.append(path)
    return files


def _one_or_list(files: list[str]):
    return files[0] if len(files) == 1 else files


def _optimizer(train_cfg: dict, recipe_train: dict, notes: list[str]) -> None:
    name = str(train_cfg.get("optimizer", SEVENN_TRAIN_DEFAULTS["optimizer"])).lower()
    if name in ("adam", "adamw"):
        recipe_train["optimizer"] = name
    else:
        notes.append(f"train.optimizer={name}: not in sparseft (adam, adamw); adam used")
        recipe_train["optimizer"] = "adam"
    params = dict(train_cfg.get("optim_param") or {})
    if "lr" in params:
        recipe_train["lr"] = _num("train.optim_param.lr", params.pop("lr"))
    else:
        notes.append("train.optim_param.lr: not given (torch's default 0.001 under sevenn); lr 0.001 used")
        recipe_train["lr"] = 1e-3
    if "weight_decay" in params:
        recipe_train["weight_decay"] = _num("train.optim_param.weight_decay", params.pop("weight_decay"))
    recipe_train["amsgrad"] = bool(params.pop("amsgrad", False))  # torch's (sevenn's) default; sparseft's is on
    for key in sorted(params):
        notes.append(f"train.optim_param.{key}={params[key]!r}: no sparseft equivalent")


def _scheduler(train_cfg: dict, epochs: int, recipe_train: dict, notes: list[str]) -> None:
    """sevenn steps its scheduler once an epoch (plateau: on the validation loss)."""
    name = str(train_cfg.get("scheduler", SEVENN_TRAIN_DEFAULTS["scheduler"])).lower()
    params = dict(train_cfg.get("scheduler_param") or {})
    shown = f"train.scheduler={name}" + (f", train.scheduler_param={params}" if params else "")
    if name == "reducelronplateau":
        recipe_train["scheduler"] = "plateau"
        if params:
            notes.append(f"{shown}: mapped to plateau; its parameters are not (sparseft's own)")
        return
    if name == "cosineannealinglr":
        recipe_train["scheduler"] = "cosine"
        t_max, eta_min = params.pop("T_max", epochs), params.pop("eta_min", 0)
        if t_max != epochs or eta_min or params:
            notes.append(f"{shown}: mapped to cosine over train.epochs down to 0 (T_max/eta_min not mapped)")
        return
    if name == "exponentiallr":  # torch's ExponentialLR, stepped once an epoch: the same schedule
        if "gamma" not in params:  # torch's ExponentialLR requires it (sevenn would stop here)
            notes.append(f"{shown}: no gamma given; a constant lr used")
            recipe_train["scheduler"] = "constant"
            return
        gamma = _num("train.scheduler_param.gamma", params.pop("gamma"))
        recipe_train["scheduler"], recipe_train["lr_gamma"] = "exponential", gamma
        if params:
            notes.append(f"{shown}: mapped to exponential with gamma; {sorted(params)} not mapped")
        return
    # the fraction of the lr left at the last epoch under sevenn's schedule, where it is known
    left = None
    if name == "linearlr":
        start = _num("train.scheduler_param.start_factor", params.get("start_factor", 1 / 3))
        end = _num("train.scheduler_param.end_factor", params.get("end_factor", 1.0))
        total = _num("train.scheduler_param.total_iters", params.get("total_iters", 5), int)
        left = start + (end - start) * min(epochs - 1, total) / max(total, 1)
    elif name == "constantlr" or name in ("none", "null"):
        left = 1.0
    choice = "constant" if left is not None and left >= 0.5 else "cosine"
    recipe_train["scheduler"] = choice
    if name not in ("none", "null"):
        where = f" (lr at the last epoch: {left:.2g}x)" if left is not None and math.isfinite(left) else ""
        notes.append(f"{shown}: not in sparseft (constant, cosine, plateau, exponential); {choice} used{where}")


# sevenn's best_metric (error_recorder names, energy per atom) -> sparseft's train.select_on
BEST_METRIC = {
    "TotalLoss": "loss",
    "Energy_MAE": "energy_per_atom_mae",
    "Energy_RMSE": "energy_per_atom_rmse",
    "Force_MAE": "forces_mae",
    "Force_RMSE": "forces_rmse",
    "Stress_MAE": "stress_mae",
    "Stress_RMSE": "stress_rmse",
}


def _best_metric(train_cfg: dict, train: dict, notes: list) -> None:
    name = train_cfg.get("best_metric", "TotalLoss")
    if name in BEST_METRIC:
        if BEST_METRIC[name] != "loss":
            train["select_on"] = BEST_METRIC[name]
    else:
        notes.append(
            f"train.best_metric={name!r}: not one of {', '.join(BEST_METRIC)}; sparseft picks the best "
            "epoch on the validation loss (train.select_on: loss)"
        )


def _loss(train_cfg: dict, recipe_train: dict, notes: list[str]) -> None:
    recipe_train["energy_weight"] = 1.0  # sevenn's energy term: per atom, weight 1
    recipe_train["forces_weight"] = _num(
        "train.force_loss_weight", train_cfg.get("force_loss_weight", SEVENN_TRAIN_DEFAULTS["force_loss_weight"])
    )
    if train_cfg.get("is_train_stress", SEVENN_TRAIN_DEFAULTS["is_train_stress"]):
        weight = _num(
            "train.stress_loss_weight", train_cfg.get("stress_loss_weight", SEVENN_TRAIN_DEFAULTS["stress_loss_weight"])
        )
        # sevenn's stress term is in kbar: the same term in eV/Å³ under MSE is weight x 1602^2
        recipe_train["stress_weight"] = weight * KBAR_PER_EV_A3**2
        notes.append(
            f"train.stress_loss_weight={weight:g}: sevenn's stress term is in kbar, sparseft's in eV/Å³; "
            f"written as {recipe_train['stress_weight']:.6g} (x1602² for a squared error)"
        )
    else:
        recipe_train["stress_weight"] = 0.0
    loss = str(train_cfg.get("loss", SEVENN_TRAIN_DEFAULTS["loss"])).lower()
    params = dict(train_cfg.get("loss_param") or {})
    shown = f"train.loss={train_cfg.get('loss')}" + (f", train.loss_param={params}" if params else "")
    if loss == "huber":
        recipe_train["loss"] = "huber"
        recipe_train["huber_delta"] = _num("train.loss_param.delta", params.pop("delta", 1.0))  # torch's default
        if recipe_train["stress_weight"]:
            notes.append(
                f"{shown}: sevenn's Huber acts on stress in kbar; sparseft's delta applies in eV/Å³ "
                "to every term, so the stress term is not the same function"
            )
    elif loss != "mse":
        notes.append(f"{shown}: not in sparseft (mse, huber); mse used")
        params = {}
    for key in sorted(params):
        notes.append(f"train.loss_param.{key}={params[key]!r}: no sparseft equivalent")


def _continue(train_cfg: dict, base_dir: Path, recipe: dict, notes: list[str]) -> dict:
    """``train.continue``: the base model; what of the checkpoint's state sevenn keeps."""
    cont = train_cfg.get("continue")
    if cont is None or cont is False:
        cont = {}
    if not isinstance(cont, dict):
        raise SevennInputError(f"train.continue: expected a mapping, got {type(cont).__name__}")
    cont = dict(cont)
    checkpoint = cont.pop("checkpoint", None)
    if checkpoint:
        recipe["base"]["model"] = _model_name(checkpoint, base_dir, notes)
    else:
        notes.append(
            "train.continue.checkpoint: not given (sevenn would train a new model from scratch); "
            "sparseft fine-tunes a base model: sevennet:7net-0 written, edit base.model"
        )
        recipe["base"]["model"] = "sevennet:7net-0"
    for key in ("reset_optimizer", "reset_scheduler", "reset_epoch"):
        if cont.pop(key, False) is not True:
            notes.append(
                f"train.continue.{key}: false (sevenn resumes that state from the checkpoint); "
                "sparseft starts optimiser, schedule and epochs afresh"
            )
    cont.pop("use_statistic_values_for_cp_modal_only", None)  # multi-modal bookkeeping
    own_statistics = cont.pop("use_statistic_values_of_checkpoint", True)
    ewc = [k for k in ("fisher_information", "opt_params", "ewc_lambda") if k in cont]
    if ewc:
        notes.append(
            f"train.continue.{', '.join(ewc)}: sevenn's (re)EWC penalty is not in sparseft; data.replay "
            "(or a sparse/LoRA adapter) limits forgetting instead"
        )
        for k in ewc:
            cont.pop(k)
    for key in sorted(cont):
        notes.append(f"train.continue.{key}={cont[key]!r}: no sparseft equivalent")
    return {"own_statistics": bool(own_statistics)}


def _energy_zero(model_cfg: dict, data_cfg: dict, state: dict, recipe: dict, notes: list[str]) -> None:
    """The per-element energy shift: sevenn keeps the checkpoint's (``E0s: foundation``) unless it
    trains it (``train_shift_scale``) or recomputes it from the data."""
    trains = bool(model_cfg.get("train_shift_scale", False))
    recomputes = not state["own_statistics"]
    if trains or recomputes:
        recipe["data"]["E0s"] = "estimated"
        why = "model.train_shift_scale: true (sevenn trains shift and scale)" if trains else ""
        if recomputes:
            why += ("; " if why else "") + (
                "train.continue.use_statistic_values_of_checkpoint: false (sevenn recomputes shift "
                f"{data_cfg.get('shift', 'per_atom_energy_mean')!r} and scale {data_cfg.get('scale', 'force_rms')!r} "
                "from the data)"
            )
        notes.append(
            f"{why}: sparseft keeps the base's scale; data.E0s: estimated refits the per-element energy shift instead"
        )
    else:
        recipe["data"]["E0s"] = "foundation"  # sevenn keeps the checkpoint's shift and scale
        for key in ("shift", "scale"):
            if key in data_cfg:
                notes.append(f"data.{key}={data_cfg[key]!r}: ignored (as by sevenn: the checkpoint's values are kept)")
    for key in ("use_modal_wise_shift", "use_modal_wise_scale"):
        if data_cfg.get(key):
            notes.append(f"data.{key}: true: sparseft has no modalities")
    if model_cfg.get("train_denominator"):
        notes.append("model.train_denominator: true: the convolution denominators stay fixed in sparseft (buffers)")


def _modality(modalities: list[str], recipe: dict, notes: list[str]) -> None:
    """One ``data_modality`` in the data files: the modality the multi-fidelity base trains and
    predicts (``base.modality``); several: a note, as sparseft fine-tunes one."""
    if len(set(modalities)) == 1:
        recipe["base"]["modality"] = modalities[0]
    elif modalities:
        notes.append(
            f"data: data_modality entries of {sorted(set(modalities))}: sparseft fine-tunes one modality; "
            "base.modality not written: set it and keep only that modality's files"
        )


def _data(data_cfg: dict, base_dir: Path, recipe: dict, recipe_train: dict, notes: list[str]) -> set:
    """Data files, keys, batch size; returns the data keys handled."""
    data = recipe["data"]
    handled = {"batch_size", "shift", "scale", "use_modal_wise_shift", "use_modal_wise_scale"}
    recipe_train["batch_size"] = _num("data.batch_size", data_cfg.get("batch_size", SEVENN_BATCH_SIZE), int)
    roles = {"load_trainset_path": "train", "load_dataset_path": "train", "load_validset_path": "valid"}
    roles["load_testset_path"] = "test"
    modalities: list[str] = []
    for key, role in roles.items():
        if data_cfg.get(key) is None:
            continue
        handled.add(key)
        files = _files(key, data_cfg[key], base_dir, notes, modalities)
        if not files:
            continue
        if role in data:
            data[role] = list(data[role] if isinstance(data[role], list) else [data[role]]) + files
        else:
            data[role] = _one_or_list(files)
    _modality(modalities, recipe, notes)
    for key in sorted(k for k in data_cfg if k.startswith("load_") and k.endswith("set_path") and k not in handled):
        handled.add(key)
        notes.append(f"data.{key}: an extra (multi-modal) data set; sparseft has no modalities: not mapped")
    if "train" not in data:
        notes.append("data.load_trainset_path: not given; data.train needs a file")
    ratio = data_cfg.get("data_divide_ratio")
    handled.add("data_divide_ratio")
    if "valid" in data:
        data["valid_fraction"] = 0.0
        if ratio:
            notes.append(f"data.data_divide_ratio={ratio}: ignored (as by sevenn: load_validset_path is given)")
    else:
        data["valid_fraction"] = _num("data.data_divide_ratio", ratio or 0.0)  # 0: no validation, as in sevenn
    fmt = str(data_cfg.get("data_format", "ase")).lower()
    handled.add("data_format")
    if fmt not in ("ase", "extxyz"):
        notes.append(f"data.data_format={fmt!r}: sparseft reads ASE files only")
    args = dict(data_cfg.get("data_format_args") or {})
    handled.add("data_format_args")
    # sevenn reads the labels of ASE's calculator unless a key names them; sparseft's default keys
    # (REF_energy, ...) fall back to the calculator too, so only named keys are written
    for sevenn_key, recipe_key in (
        ("energy_key", "energy_key"),
        ("force_key", "forces_key"),
        ("stress_key", "stress_key"),
    ):
        if sevenn_key in args:
            data[recipe_key] = str(args.pop(sevenn_key))
    if str(args.pop("index", ":")) != ":":
        notes.append(
            f"data.data_format_args.index={data_cfg['data_format_args']['index']!r}: sparseft reads every frame"
        )
    for key in sorted(args):
        notes.append(f"data.data_format_args.{key}={args[key]!r}: no sparseft equivalent (ase.io.read argument)")
    dtype = str(data_cfg.get("dtype", "single")).lower()
    handled.add("dtype")
    recipe["base"]["dtype"] = "float64" if dtype in ("double", "float64") else "float32"
    if data_cfg.get("rehearsal"):
        memory = _files("load_memory_path", data_cfg.get("load_memory_path") or [], base_dir, notes)
        if memory:
            data["replay"] = {"source": memory[0], "labels": "file"}
        notes.append(
            "data.rehearsal, data.load_memory_path: replay of a memory set; mapped to data.replay (its first file)"
            + (f"; {len(memory) - 1} more files dropped" if len(memory) > 1 else "")
            + "; mem_batch_size/mem_ratio not mapped"
        )
    handled |= {"rehearsal", "load_memory_path", "mem_batch_size", "mem_ratio"}
    return handled


def convert_config(config, base_dir: Path | str = ".") -> tuple[dict, list[str]]:
    """``(recipe dict, notes)`` for a parsed sevenn input (``model``, ``train``, ``data``
    sections); relative paths are read against ``base_dir``, and written absolute."""
    if not isinstance(config, dict):
        raise SevennInputError(f"not a sevenn input: expected a YAML mapping, got {type(config).__name__}")
    if not isinstance(config.get("model"), dict):
        raise SevennInputError("not a sevenn input: no model section (sevenn's input.yaml has model, train, data)")
    base_dir = Path(base_dir)
    model_cfg = config["model"]
    train_cfg, data_cfg = config.get("train") or {}, config.get("data") or {}
    for name, section in (("train", train_cfg), ("data", data_cfg)):
        if not isinstance(section, dict):
            raise SevennInputError(f"{name}: expected a mapping, got {type(section).__name__}")
    notes: list[str] = []
    recipe: dict = {"base": {}, "data": {}, "adapters": [{"method": "full"}], "train": {}, "output": {}}
    train = recipe["train"]

    # train
    state = _continue(train_cfg, base_dir, recipe, notes)
    epochs = _num("train.epoch", train_cfg.get("epoch", SEVENN_TRAIN_DEFAULTS["epoch"]), int)
    train["epochs"] = epochs
    train["seed"] = _num("train.random_seed", train_cfg.get("random_seed", SEVENN_TRAIN_DEFAULTS["random_seed"]), int)
    _optimizer(train_cfg, train, notes)
    _scheduler(train_cfg, epochs, train, notes)
    _loss(train_cfg, train, notes)
    train["clip_grad"] = None  # sevenn does not clip gradients
    if "device" in train_cfg and str(train_cfg["device"]).split(":")[0] in ("cpu", "cuda"):
        recipe["base"]["device"] = str(train_cfg["device"]).split(":")[0]
    if train_cfg.get("train_shuffle", True) is False:
        notes.append("train.train_shuffle: false: sparseft always shuffles the training frames")
    _best_metric(train_cfg, train, notes)
    for key in ("use_weight", "use_modality", "default_modal"):
        if train_cfg.get(key):
            notes.append(
                f"train.{key}={train_cfg[key]!r}: sparseft has no per-data-set weights and trains one "
                "modality (base.modality)"
            )
    handled_train = {
        "continue",
        "epoch",
        "random_seed",
        "optimizer",
        "optim_param",
        "scheduler",
        "scheduler_param",
        "loss",
        "loss_param",
        "force_loss_weight",
        "stress_loss_weight",
        "is_train_stress",
        "device",
        "train_shuffle",
        "best_metric",
        "use_weight",
        "use_modality",
        "default_modal",
    }

    # data, and the energy zero (model.train_shift_scale, data.shift/scale)
    handled_data = _data(data_cfg, base_dir, recipe, train, notes)
    _energy_zero(model_cfg, data_cfg, state, recipe, notes)
    recipe["output"]["directory"] = "sevenn-sparseft"

    # every key not handled above is named
    no_effect = sorted(f"train.{k}" for k in train_cfg if k in NO_EFFECT["train"])
    no_effect += sorted(f"data.{k}" for k in data_cfg if k in NO_EFFECT["data"])
    for key in sorted(set(train_cfg) - handled_train - NO_EFFECT["train"]):
        notes.append(f"train.{key}={train_cfg[key]!r}: no sparseft equivalent")
    for key in sorted(set(data_cfg) - handled_data - NO_EFFECT["data"]):
        notes.append(f"data.{key}={data_cfg[key]!r}: no sparseft equivalent")
    architecture = sorted(k for k in model_cfg if k in ARCHITECTURE)
    if architecture:
        notes.append(f"model.{{{', '.join(architecture)}}}: ignored; the architecture comes from the checkpoint")
    for key in sorted(set(model_cfg) - ARCHITECTURE - {"train_shift_scale", "train_denominator"}):
        notes.append(f"model.{key}={model_cfg[key]!r}: no sparseft equivalent")
    if no_effect:
        notes.append(f"{', '.join(no_effect)}: sevenn bookkeeping (checkpoints, logs, caching); no sparseft effect")
    for key in sorted(set(config) - {"model", "train", "data"}):
        notes.append(f"{key}: not a section of sevenn's input (model, train, data)")
    return {k: v for k, v in recipe.items() if v or k == "adapters"}, notes


def read_input(path) -> dict:
    """The parsed sevenn input file; one-line errors for a missing or unreadable file."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such sevenn input file")
    if path.is_dir():
        raise SevennInputError(f"{path}: is a folder, not a sevenn input file")
    try:
        config = yaml.safe_load(path.read_text())
    except UnicodeDecodeError as exc:
        raise SevennInputError(f"{path}: not a text file (sevenn's input is YAML)") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise SevennInputError(f"{path}: not YAML{line}: {getattr(exc, 'problem', None) or exc}") from exc
    if config is None:
        raise SevennInputError(f"{path}: empty file (not a sevenn input)")
    return config


def convert(path) -> tuple[dict, list[str]]:
    """``(recipe dict, notes)`` for a sevenn input file; absolute paths."""
    path = Path(path)
    config = read_input(path)
    try:
        return convert_config(config, base_dir=path.resolve().parent)
    except SevennInputError as exc:
        raise SevennInputError(f"{path}: {exc}") from exc


def _relative_paths(recipe: dict, folder: Path) -> dict:
    """Absolute paths of the recipe written relative to ``folder`` (where the recipe is read from)."""

    def rel(value):
        if isinstance(value, list):
            return [rel(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value):
            return os.path.relpath(value, folder)
        return value

    for section, key in (("base", "model"), ("data", "train"), ("data", "valid"), ("data", "test")):
        if key in recipe.get(section, {}):
            recipe[section][key] = rel(recipe[section][key])
    if isinstance(recipe.get("data", {}).get("replay"), dict):
        recipe["data"]["replay"]["source"] = rel(recipe["data"]["replay"]["source"])
    return recipe


def add_parser(sub, parents=()) -> None:
    p = sub.add_parser(
        "convert-sevenn-args",
        parents=list(parents),
        help="turn a sevenn training input.yaml into a sparseft recipe",
        description="sparseft convert-sevenn-args input.yaml [-o recipe.yaml]: a sevenn training input "
        "(e.g. from `sevenn preset fine_tune`) -> the equivalent recipe (method: full); what cannot be "
        "mapped is listed on stderr",
    )
    p.add_argument("input", help="sevenn's input.yaml")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write the recipe here (default: print it)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from .convert_emit import emit_recipe

    recipe, notes = convert(args.input)
    folder = Path(args.output).resolve().parent if args.output else Path.cwd()
    recipe = _relative_paths(recipe, folder)
    header = f"# converted from sevenn's {Path(args.input).name} by sparseft convert-sevenn-args\n"
    return emit_recipe(header, recipe, notes, args.output, source="convert-sevenn-args", allow_unicode=True)
