"""``sparseft convert-mace-args``: a mace_run_train fine-tuning set-up (YAML config and/or
argument list) -> the equivalent sparseft recipe, plus what could not be mapped.

The arguments are parsed by mace-torch's own parser (``mace.tools.arg_parser``), so names,
types and defaults are mace's: a value the user left at mace's default still maps (mace's
``lr``, ``batch_size``, loss weights and epochs, not sparseft's), and only what the user set
and sparseft cannot do is reported.
"""

from __future__ import annotations

import ast

# mace argument -> (recipe section, key); values are copied as they are
DIRECT = {
    "foundation_model": ("base", "model"),
    "foundation_head": ("base", "head"),
    "default_dtype": ("base", "dtype"),
    "train_file": ("data", "train"),
    "valid_file": ("data", "valid"),
    "test_file": ("data", "test"),
    "valid_fraction": ("data", "valid_fraction"),
    "energy_key": ("data", "energy_key"),
    "forces_key": ("data", "forces_key"),
    "stress_key": ("data", "stress_key"),
    "virials_key": ("data", "virials_key"),
    "lr": ("train", "lr"),
    "max_num_epochs": ("train", "epochs"),
    "batch_size": ("train", "batch_size"),
    "energy_weight": ("train", "energy_weight"),
    "forces_weight": ("train", "forces_weight"),
    "stress_weight": ("train", "stress_weight"),
    "weight_decay": ("train", "weight_decay"),
    "clip_grad": ("train", "clip_grad"),
    "patience": ("train", "patience"),
    "seed": ("train", "seed"),
    "eval_interval": ("train", "eval_interval"),
}
# stage two (--swa, alias --stage_two): copied only with --swa, mace's defaults included
STAGE_TWO = {
    "start_swa": "start_swa",
    "swa_lr": "swa_lr",
    "swa_energy_weight": "swa_energy_weight",
    "swa_forces_weight": "swa_forces_weight",
    "swa_stress_weight": "swa_stress_weight",
}
# handled below (not copied one-to-one)
SPECIAL = {
    "E0s",
    "lr_scheduler_gamma",
    "huber_delta",
    "config_type_weights",
    "device",
    "optimizer",
    "scheduler",
    "ema",
    "ema_decay",
    "lora",
    "lora_rank",
    "lora_alpha",
    "freeze",
    "name",
    "work_dir",
    "model_dir",
    "loss",
    "config",
    "pt_train_file",
    "multiheads_finetuning",
    "swa",
    "keep_checkpoints",
    "save_all_checkpoints",
}
# the architecture comes from the foundation model, and bookkeeping has no sparseft effect
IGNORED_WITH_FOUNDATION = {
    "model",
    "r_max",
    "num_radial_basis",
    "num_cutoff_basis",
    "max_L",
    "max_ell",
    "interaction",
    "interaction_first",
    "num_interactions",
    "correlation",
    "hidden_irreps",
    "num_channels",
    "MLP_irreps",
    "radial_MLP",
    "radial_type",
    "gate",
    "avg_num_neighbors",
    "compute_avg_num_neighbors",
    "scaling",
    "mean",
    "std",
    "atomic_numbers",
    "pair_repulsion",
    "distance_transform",
    "use_reduced_cg",
    "use_so3",
    "use_agnostic_product",
    "use_last_readout_only",
    "use_embedding_readout",
    "edge_irreps",
    "compute_forces",
    "compute_stress",
}
NO_EFFECT = {
    "log_dir",
    "checkpoints_dir",
    "results_dir",
    "downloads_dir",
    "log_level",
    "error_table",
    "save_cpu",
    "restart_latest",
    "num_workers",
    "pin_memory",
    "wandb",
    "distributed",
    "plot",
    "plot_frequency",
    "enable_cueq",
    "enable_oeq",
    "only_cueq",
}


def _parse(argv: list[str]):
    """mace's namespace for ``argv`` and the names the user set (differ from mace's default)."""
    # isort: off
    from ..._compat import mace  # noqa: F401  (first: it filters mace's import-time warning and note)
    from mace.tools.arg_parser import build_default_arg_parser

    # isort: on

    parser = build_default_arg_parser()

    def error(message):  # one line, not mace's whole usage
        raise ValueError(f"convert-mace-args: {message} (mace_run_train's arguments; see mace_run_train --help)")

    parser.error = error
    for action in parser._actions:  # noqa: SLF001 - --name is required by mace, optional here
        if action.dest == "name":
            action.required, action.default = False, "mace"
    args, rest = parser.parse_known_args(list(argv))
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}  # noqa: SLF001
    given = {k for k, v in vars(args).items() if k in defaults and v != defaults[k]}
    return args, given, rest


def _literal(value):
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _adapters(args, notes: list[str]) -> list[dict]:
    if getattr(args, "lora", False):
        if getattr(args, "lora_alpha", None) not in (None, 1.0, 1):
            notes.append(
                f"lora_alpha={args.lora_alpha}: sparseft LoRA has no alpha (its scale is learned through A, B)"
            )
        return [{"method": "lora", "rank": int(getattr(args, "lora_rank", 4) or 4)}]
    if getattr(args, "freeze", None):
        notes.append(
            f"freeze={args.freeze}: mace freezes its first module groups by position; sparseft selects "
            "what trains by block kind/layer: mapped to full fine-tuning of the readouts "
            "({method: freeze, select: {kinds: [readout]}}); adjust the selector"
        )
        return [{"method": "freeze", "select": {"kinds": ["readout"]}}]
    return [{"method": "full"}]


def _train_section(args, notes: list[str]) -> dict:
    train = {}
    optimizer = str(getattr(args, "optimizer", "adam")).lower()
    if optimizer in ("adam", "adamw"):
        train["optimizer"] = optimizer
    else:
        notes.append(f"optimizer={optimizer}: not in sparseft (adam, adamw); adam used")
    scheduler = str(getattr(args, "scheduler", "ReduceLROnPlateau"))
    if scheduler == "ExponentialLR":
        train["scheduler"], train["lr_gamma"] = "exponential", float(getattr(args, "lr_scheduler_gamma", 0.9993))
    else:
        train["scheduler"] = "plateau" if scheduler == "ReduceLROnPlateau" else "cosine"
        if scheduler != "ReduceLROnPlateau":
            notes.append(f"scheduler={scheduler}: not in sparseft; cosine used")
    if getattr(args, "ema", False):
        train["ema_decay"] = float(args.ema_decay)
    if getattr(args, "keep_checkpoints", False) or getattr(args, "save_all_checkpoints", False):
        train["keep_checkpoints"] = None  # mace keeps every checkpoint it writes
    if getattr(args, "swa", False):
        train["swa"] = True
        for name, key in STAGE_TWO.items():
            if getattr(args, name, None) is not None:
                train[key] = getattr(args, name)
    return train


def convert(argv: list[str]) -> tuple[dict, list[str]]:
    """``(recipe dict, notes)`` for a mace_run_train argument list (``--config FILE`` included)."""
    args, given, rest = _parse(argv)
    notes = [f"{token}: not a mace_run_train argument" for token in rest if token.startswith("--")]
    recipe: dict = {
        "base": {},
        "data": {},
        "adapters": _adapters(args, notes),
        "train": _train_section(args, notes),
        "output": {},
    }
    for name, (section, key) in DIRECT.items():
        value = getattr(args, name, None)
        if value is not None:
            recipe[section][key] = value
    if recipe["base"].get("model") in ("small", "medium", "large", "small_off", "medium_off", "large_off", "mp"):
        notes.append(
            f"foundation_model={recipe['base']['model']}: a mace-mp name; download the .model file and "
            "give its path as base.model"
        )
    if getattr(args, "E0s", None) is not None:
        recipe["data"]["E0s"] = _literal(args.E0s)
    if getattr(args, "config_type_weights", None):
        weights = _literal(args.config_type_weights)
        if weights != {"Default": 1.0}:
            recipe["data"]["config_type_weights"] = weights
    if "device" in given and args.device in ("cpu", "cuda"):
        recipe["base"]["device"] = args.device
    if getattr(args, "pt_train_file", None):
        files = [recipe["data"].get("train")] + [args.pt_train_file]
        recipe["data"]["train"] = [f for f in files if f]
        notes.append(
            "pt_train_file: listed in data.train as replay data; mace's num_samples, "
            "weight_pt_head and the separate pt_head are not mapped"
        )
    if getattr(args, "multiheads_finetuning", False) and recipe["base"].get("model") and not args.pt_train_file:
        notes.append(
            "multiheads_finetuning (mace's default with a foundation model): mace would also train a "
            "pt_head on replayed pretraining data; not mapped: list replay data in data.train"
        )
    loss = getattr(args, "loss", "weighted")
    if loss in ("weighted", "ef"):  # mace's energy + forces loss: stress does not train
        recipe["train"]["stress_weight"] = 0.0
        if "swa_stress_weight" in recipe["train"]:
            recipe["train"]["swa_stress_weight"] = 0.0  # not in stage two either
    if loss in ("huber", "universal"):
        recipe["train"]["loss"] = "huber"
        recipe["train"]["huber_delta"] = float(getattr(args, "huber_delta", 0.01))
        if loss == "universal":
            notes.append("loss=universal: mapped to huber (mace's conditional, force-size-dependent delta is not)")
    elif loss not in ("weighted", "ef", "stress", "virials"):
        notes.append(f"loss={loss}: sparseft trains weighted energy/forces/stress (mse or huber); mse used")
    recipe["output"]["directory"] = f"{getattr(args, 'name', None) or 'mace'}-sparseft"
    handled = set(DIRECT) | SPECIAL | (set(STAGE_TWO) if getattr(args, "swa", False) else set())
    for name in sorted(given - handled):
        if name in STAGE_TWO:
            notes.append(f"{name}: ignored without --swa (as by mace_run_train)")
        elif name in IGNORED_WITH_FOUNDATION:
            notes.append(f"{name}: ignored; the architecture comes from the foundation model")
        elif name not in NO_EFFECT:
            notes.append(f"{name}={getattr(args, name)!r}: no sparseft equivalent")
    if not recipe["base"].get("model"):
        notes.append("foundation_model: not given; sparseft fine-tunes a model (base.model: embedded for the demo)")
        recipe["base"]["model"] = "embedded"
    return {k: v for k, v in recipe.items() if v or k == "adapters"}, notes


def add_parser(sub, parents=()) -> None:
    p = sub.add_parser(
        "convert-mace-args",
        parents=list(parents),
        help="turn a mace_run_train config/arguments into a sparseft recipe",
        description="sparseft convert-mace-args [config.yaml] [-o recipe.yaml] -- [--foundation_model "
        "m.model --train_file t.xyz ...]: a mace_run_train YAML config and/or arguments "
        "-> the equivalent recipe; what cannot be mapped is listed on stderr",
    )
    p.add_argument("config", nargs="?", default=None, help="a mace_run_train YAML config (its --config)")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write the recipe here (default: print it)")
    p.set_defaults(func=cmd_convert, takes_extra=True)  # the mace arguments: everything argparse does not know


def cmd_convert(args) -> int:
    from pathlib import Path

    from ...convert_emit import emit_recipe

    argv = [a for a in args.extra if a != "--"]
    if args.config and args.config.startswith("-"):  # after "--", argparse hands the first mace argument here
        argv, args.config = [args.config] + argv, None
    if args.config:
        if not Path(args.config).is_file():
            raise FileNotFoundError(f"{args.config}: no such mace config file")
        argv = ["--config", args.config] + argv
    recipe, notes = convert(argv)
    header = "# converted from mace_run_train arguments by sparseft convert-mace-args\n"
    return emit_recipe(header, recipe, notes, args.output, source="convert-mace-args")
