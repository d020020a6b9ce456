"""Recipes: YAML that maps one-to-one onto typed dataclasses.

Unknown keys are errors listing the valid ones, with the recipe path (``train.lr``). Key
names follow ``mace_run_train`` where one exists. A recipe never imports code.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml
from ase.data import chemical_symbols

from .adapters import AdapterConfig, config_from_dict, default_lr
from .core.facts import check_e0s_option
from .heads.base import HeadError
from .heads.config import HeadConfig, head_config_from_dict
from .ranges import check_field, ranged
from .typed import check_type


class RecipeError(ValueError):
    """A recipe that is malformed; the message names the recipe path of the problem."""


@dataclass
class BaseSection:
    """The base model: a model file (mace ``.model``, sevenn ``.pth``), ``embedded`` (the shipped
    mini-foundation) or ``sevennet:<name>`` (a SevenNet checkpoint shipped with sevenn).
    ``add_elements`` extends its element table (chemical symbols), each new element starting
    as ``element_init`` says (``nearest``, ``mean``, ``random`` or ``{new: base element}``,
    see :mod:`sparseft.elements`). ``head`` picks a multi-head mace model's head, ``modality``
    a multi-fidelity SevenNet's (``sevennet:7net-mf-0``: ``PBE`` or ``R2SCAN``)."""

    model: str = "embedded"
    dtype: str = "float64"
    device: str = "auto"
    head: typing.Optional[str] = None
    modality: typing.Optional[str] = None  # a multi-fidelity SevenNet's fidelity (sevenn's modal)
    add_elements: object = field(default_factory=list)
    element_init: typing.Union[str, dict] = "nearest"


@dataclass
class DataSection:
    """Data files and key names (``mace_run_train`` spelling). A key set to null disables that
    label for the foundation head; ``calculator_labels`` names who receives the values of a
    frame's ASE calculator (``foundation``, a head name, or ``none``); ``evaluate`` maps names
    to extra files that are only evaluated (e.g. the base's own level of theory, to measure
    forgetting)."""

    train: typing.Union[str, list] = ""
    valid: typing.Union[str, list, None] = None
    test: typing.Union[str, list, None] = None
    valid_fraction: float = field(default=0.1, metadata=ranged(ge=0, lt=1))
    test_fraction: float = field(default=0.0, metadata=ranged(ge=0, lt=1))
    split_seed: int = field(default=0, metadata=ranged(ge=0))
    energy_key: typing.Optional[str] = "REF_energy"
    forces_key: typing.Optional[str] = "REF_forces"
    stress_key: typing.Optional[str] = "REF_stress"
    virials_key: typing.Optional[str] = "REF_virials"
    calculator_labels: str = "foundation"
    E0s: typing.Union[str, dict, None] = None  # None: IsolatedAtom frames' energies, else foundation
    config_type_weights: dict = field(default_factory=dict)
    evaluate: dict = field(default_factory=dict)
    replay: typing.Union[str, dict, None] = None  # see sparseft.replay.ReplayConfig
    new_elements: str = "error"


@dataclass
class TrainSection:
    """Optimiser, schedule, loss weights, sparsity schedule, EMA, clipping, early stopping.

    ``batch_size`` is the global batch: under ``torchrun`` it is split across the ranks, so one
    recipe trains the same model on any number of processes. ``target_density`` counts the
    selected weights the training data reaches (per-element weights of absent elements excluded).
    """

    optimizer: str = "adam"
    lr: typing.Optional[float] = field(default=None, metadata=ranged(gt=0))  # null: the adapters' default_lr
    weight_decay: float = field(default=0.0, metadata=ranged(ge=0))
    amsgrad: bool = True  # mace_run_train's optimiser (its --amsgrad is on by default)
    scheduler: str = "cosine"
    lr_gamma: float = field(default=0.99, metadata=ranged(gt=0, le=1))  # scheduler: exponential, per epoch
    warmup_epochs: int = field(default=0, metadata=ranged(ge=0))
    epochs: int = field(default=20, metadata=ranged(ge=1))
    max_steps: typing.Optional[int] = field(default=None, metadata=ranged(ge=1))  # null: epochs decide
    batch_size: int = field(default=4, metadata=ranged(ge=1))
    # E:F = 10:1, mace_run_train's stage-two (SWA) weights 1000:100 and the converged benchmark's:
    # at 1:10 the per-atom energy term is ~1e-3 of the loss and energies can end worse than zero-shot
    energy_weight: float = field(default=100.0, metadata=ranged(ge=0))
    forces_weight: float = field(default=10.0, metadata=ranged(ge=0))
    stress_weight: float = field(default=1.0, metadata=ranged(ge=0))
    # per-entry loss: squared error, or Huber with huber_delta in each quantity's units (sevenn's
    # and mace's fine-tuning loss, delta 0.01)
    loss: str = "mse"
    huber_delta: float = field(default=0.01, metadata=ranged(gt=0))
    loss_weighting: str = "fixed"
    l1_schedule: str = "constant"
    target_density: typing.Optional[float] = field(default=None, metadata=ranged(gt=0, le=1))
    retrain_fraction: float = field(default=0.3, metadata=ranged(ge=0, lt=1))
    ema_decay: typing.Optional[float] = field(default=None, metadata=ranged(ge=0, lt=1))  # null: no EMA
    clip_grad: typing.Optional[float] = field(default=10.0, metadata=ranged(gt=0))  # null: no clipping
    patience: typing.Optional[int] = field(default=None, metadata=ranged(ge=0))
    # the validation quantity that picks the best epoch and drives patience and the plateau
    # schedule: the training loss's weighted sum (mace's choice), or one MAE/RMSE of the foundation head
    select_on: str = "loss"
    # best epoch: one no worse than zero-shot on validation energy and force MAE wins over any that is
    zero_shot_guard: bool = True
    seed: int = field(default=0, metadata=ranged(ge=0))
    # validation after epochs 1, 1 + n, 1 + 2n, ... (mace's --eval_interval) and after the last
    eval_interval: int = field(default=1, metadata=ranged(ge=1))
    keep_checkpoints: typing.Optional[int] = field(default=1, metadata=ranged(ge=1))  # the newest ones; null: all
    # stage two (mace_run_train's --swa): from epoch start_swa on, swa_lr and the swa_* loss weights
    swa: bool = False
    start_swa: typing.Optional[int] = field(default=None, metadata=ranged(ge=1))  # null: max(1, epochs // 4 * 3)
    swa_lr: float = field(default=1e-3, metadata=ranged(gt=0))
    swa_energy_weight: float = field(default=1000.0, metadata=ranged(ge=0))
    swa_forces_weight: float = field(default=100.0, metadata=ranged(ge=0))
    swa_stress_weight: float = field(default=10.0, metadata=ranged(ge=0))


@dataclass
class OutputSection:
    directory: str = "finetune-output"
    evaluate_train: bool = False  # the final evaluation covers the train split too
    progress_seconds: float = field(default=60.0, metadata=ranged(gt=0))  # a progress line this often off a terminal


@dataclass
class Recipe:
    base: BaseSection = field(default_factory=BaseSection)
    data: DataSection = field(default_factory=DataSection)
    adapters: list = field(default_factory=list)
    heads: list = field(default_factory=list)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)
    source: typing.Optional[str] = None  # where the recipe was read from (not a YAML key)

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if f.name in ("adapters", "heads"):
                out[f.name] = [a.to_dict() for a in value]
            else:
                out[f.name] = dataclasses.asdict(value)
        return out


_CHOICES = {
    "base.dtype": ("float32", "float64"),
    "base.device": ("auto", "cpu", "cuda"),
    "train.optimizer": ("adam", "adamw"),
    "train.scheduler": ("constant", "cosine", "plateau", "exponential"),
    "train.l1_schedule": ("constant", "warmup"),
    "train.loss": ("mse", "huber"),
    "train.select_on": (
        "loss",
        "forces_mae",
        "forces_rmse",
        "energy_per_atom_mae",
        "energy_per_atom_rmse",
        "stress_mae",
        "stress_rmse",
    ),
    "train.loss_weighting": ("fixed", "random"),
    "data.new_elements": ("error", "add"),
}


def _section(cls, data, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(names)}")
    values = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in data:
            path = f"{where}.{f.name}"
            values[f.name] = check_type(data[f.name], hints[f.name], path, RecipeError)
            check_field(f, values[f.name], path, RecipeError)
            if path in _CHOICES and values[f.name] not in _CHOICES[path]:
                raise RecipeError(f"{path}: {values[f.name]!r} is not one of {', '.join(_CHOICES[path])}")
    return cls(**values)


def _entries(data, where: str, what: str, parse, errors) -> list:
    """Parse a recipe list (``adapters``, ``heads``) item by item; ``errors`` from ``parse``
    become :class:`RecipeError` (their messages already name ``where[i]``)."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise RecipeError(f"{where}: expected a list of {what}")
    out = []
    for i, item in enumerate(data):
        try:
            out.append(parse(item, f"{where}[{i}]"))
        except errors as exc:
            raise RecipeError(str(exc)) from exc
    return out


def _check_replay_head(recipe: "Recipe", name: str | None) -> None:
    """``data.replay.head`` names an energy head whose label keys are its own (not ``data``'s)."""
    if name is None:
        return
    energy_heads = [h for h in recipe.heads if h.kind == "energy"]
    head = next((h for h in energy_heads if h.name == name), None)
    if head is None:
        names = ", ".join(h.name for h in energy_heads) or "none defined"
        raise RecipeError(f"data.replay.head: {name!r} is not an energy head of this recipe (energy heads: {names})")
    d = recipe.data
    shared = [k for k in (head.energy_key, head.forces_key) if k in (d.energy_key, d.forces_key)]
    if shared:
        raise RecipeError(
            f"data.replay.head: head {name!r} reads {shared[0]}, a key of data too: the target labels would "
            "train it; give the replay head keys of its own (energy_key: REPLAY_energy, forces_key: REPLAY_forces)"
        )


def _adapter(item, path: str) -> AdapterConfig:
    if isinstance(item, dict) and item.get("method") == "full":
        item = {**item, "method": "freeze", "select": item.get("select")}
    return config_from_dict(item, path)


def _adapters(data, where: str = "adapters") -> list[AdapterConfig]:
    return _entries(data, where, "adapters", _adapter, (ValueError, TypeError))


def _heads(data, where: str = "heads") -> list[HeadConfig]:
    out = _entries(data, where, "heads", head_config_from_dict, HeadError)
    names = [h.name for h in out]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RecipeError(f"{where}: head names must be unique; repeated: {duplicates}")
    return out


def recipe_from_dict(data: dict, *, source: str | None = None) -> Recipe:
    """Build and validate a :class:`Recipe` from a parsed YAML mapping."""
    if not isinstance(data, dict):
        raise RecipeError(f"expected a YAML mapping of sections at the top level, got {type(data).__name__}")
    names = ["base", "data", "adapters", "heads", "train", "output"]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise RecipeError(f"unknown section(s) {unknown}; valid sections: {', '.join(names)}")
    recipe = Recipe(
        base=_section(BaseSection, data.get("base"), "base"),
        data=_section(DataSection, data.get("data"), "data"),
        adapters=_adapters(data.get("adapters")),
        heads=_heads(data.get("heads")),
        train=_section(TrainSection, data.get("train"), "train"),
        output=_section(OutputSection, data.get("output"), "output"),
        source=source,
    )
    _validate(recipe)
    return recipe


def _validate_elements(base: BaseSection) -> None:
    """``base.add_elements`` as chemical symbols and ``base.element_init``, or a RecipeError."""
    from .elements import INITS, ElementError, to_z

    value = base.add_elements
    if isinstance(value, (str, int)):
        value = [value]
    if not isinstance(value, list):
        raise RecipeError(f"base.add_elements: expected a list of chemical symbols, got {value!r}")
    try:
        base.add_elements = [chemical_symbols[to_z(v, f"base.add_elements[{i}]")] for i, v in enumerate(value)]
        init = base.element_init
        if isinstance(init, dict):
            base.element_init = {
                chemical_symbols[to_z(k, "base.element_init")]: chemical_symbols[to_z(v, f"base.element_init.{k}")]
                for k, v in init.items()
            }
        elif init not in INITS:
            raise RecipeError(
                f"base.element_init: {init!r} is not one of {', '.join(INITS)} or a {{new: base element}} map"
            )
    except ElementError as exc:
        raise RecipeError(str(exc)) from exc
    repeated = sorted({e for e in base.add_elements if base.add_elements.count(e) > 1})
    if repeated:
        raise RecipeError(f"base.add_elements: listed twice: {' '.join(repeated)}")


def _validate(recipe: Recipe) -> None:
    if recipe.train.lr is None:
        recipe.train.lr = default_lr(recipe.adapters)
    if not recipe.data.train:
        raise RecipeError("data.train: a training file is required")
    _validate_elements(recipe.base)
    adds = bool(recipe.base.add_elements) or recipe.data.new_elements == "add"
    if not recipe.adapters and not recipe.heads and not adds:
        raise RecipeError(
            "adapters: at least one adapter is required (method: sparse, lora, freeze or full), "
            "unless heads are trained on a frozen model"
        )
    labels = recipe.data.calculator_labels
    if labels not in ("foundation", "none") and labels not in [h.name for h in recipe.heads]:
        raise RecipeError(
            f"data.calculator_labels: {labels!r} is not foundation, none, or a head name "
            f"({', '.join(h.name for h in recipe.heads) or 'no heads defined'})"
        )
    for name, path in recipe.data.evaluate.items():
        if not isinstance(name, str) or name in ("train", "valid", "test") or not isinstance(path, str):
            raise RecipeError(
                f"data.evaluate: expected {{name: file}} with names other than train/valid/test, got {name!r}: {path!r}"
            )
    if recipe.data.replay is not None:
        from .replay import ReplayConfig

        try:
            replay = ReplayConfig.from_dict(recipe.data.replay)
        except (ValueError, TypeError) as exc:
            raise RecipeError(str(exc)) from exc
        _check_replay_head(recipe, replay.head)
    _validate_stage_two(recipe.train)
    d = recipe.data
    if d.valid_fraction + d.test_fraction >= 1:
        raise RecipeError(
            f"data.test_fraction: data.valid_fraction + data.test_fraction must be < 1, got "
            f"{d.valid_fraction} + {d.test_fraction}"
        )
    problem = check_e0s_option(d.E0s, "data.E0s")
    if problem:
        raise RecipeError(problem)
    for key, value in recipe.data.config_type_weights.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise RecipeError(
                f"data.config_type_weights: expected {{config_type: weight >= 0}}, got {key!r}: {value!r}"
            )


def _validate_stage_two(train: TrainSection) -> None:
    """Stage two (``train.swa``) must start before the last epoch (mace_run_train would warn and skip it)."""
    if not train.swa:
        return
    from .train.stage_two import start_epoch

    if train.start_swa is None and train.epochs < 2:
        raise RecipeError(f"train.swa: stage two needs train.epochs >= 2, got {train.epochs}")
    if start_epoch(train) >= train.epochs:
        raise RecipeError(
            f"train.start_swa: must be < train.epochs ({train.epochs}) for stage two to run, got {train.start_swa}"
        )


def _override(item) -> tuple[str, str]:
    """``(what an error names, section.key=value)`` of an override: ``--set 'train.lr=1'``, or a
    ``(flag, text)`` pair for a command-line shortcut such as ``("--dtype 'float32'", "base.dtype=float32")``."""
    return item if isinstance(item, tuple) else (f"--set {item!r}", item)


def apply_overrides(data: dict, overrides: list) -> dict:
    """Apply ``--set section.key=value`` overrides (values parsed as YAML; see :func:`_override`)."""
    data = dict(data or {})
    for entry in overrides or []:
        label, item = _override(entry)
        if label != f"--set {item!r}":  # a shortcut flag: checked like its recipe key, named by the flag
            section, _, rest = item.partition(".")
            key, _, raw = rest.partition("=")
            data[section] = {**(data.get(section) or {}), key: yaml.safe_load(raw)}
            continue
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected section.key=value")
        path, _, raw = item.partition("=")
        keys = path.strip().split(".")
        if len(keys) != 2:
            raise RecipeError(f"--set {item!r}: expected section.key=value, e.g. train.lr=1e-3")
        section, key = keys
        if not keys[0] or not keys[1]:
            raise RecipeError(f"--set {item!r}: expected section.key=value, e.g. train.lr=1e-3")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise RecipeError(f"--set {item!r}: not valid YAML ({_yaml_problem(exc)})") from exc
        current = data.get(section) or {}
        if not isinstance(current, dict):
            raise RecipeError(f"--set {item!r}: section {section!r} is not a mapping")
        data[section] = {**current, key: value}
    return data


def _blame(data: dict, overrides: list, message: str, path) -> str:
    """Who an error ``message`` of the recipe ``data`` with ``overrides`` belongs to: the first
    override after which it appears (its ``--set`` value or flag), else the recipe file."""
    for n in range(len(overrides) + 1):
        try:
            recipe_from_dict(apply_overrides(data, overrides[:n]))
        except RecipeError as exc:
            if str(exc) == message:
                return str(path) if n == 0 else _override(overrides[n - 1])[0]
    return str(path)


def load_recipe(path, overrides: list | None = None) -> Recipe:
    """Read a recipe file; relative data/model paths are resolved against the recipe's folder."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: binary content, not YAML text; expected a YAML mapping of sections") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(
            f"{path}: not valid YAML ({_yaml_problem(exc)}); expected a YAML mapping of sections"
        ) from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a YAML mapping of sections at the top level, got {type(data).__name__}")
    merged = apply_overrides(data, overrides or [])  # its own errors name the --set value
    try:
        recipe = recipe_from_dict(merged, source=str(path))
    except RecipeError as exc:
        raise RecipeError(f"{_blame(data, overrides or [], str(exc), path)}: {exc}") from exc
    _resolve_paths(recipe, path.parent)
    return recipe


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: the problem and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _is_name(model: str, folder: Path) -> bool:
    """Whether ``base.model`` names a base rather than a file: ``embedded``, ``<backend>:<name>``,
    or a bare word that is no file next to the recipe (``medium``: refused by name later)."""
    if model == "embedded" or re.match(r"^[a-z][a-z0-9_]*:[^/\\]", model):
        return True
    return "/" not in model and not Path(model).suffix and not (folder / model).exists()


def _resolve_paths(recipe: Recipe, folder: Path) -> None:
    def resolve(value):
        if value is None or Path(value).is_absolute():
            return value
        return str((folder / value).resolve())

    if not _is_name(recipe.base.model, folder):
        recipe.base.model = resolve(recipe.base.model)

    def resolve_data(value):
        return value if not value or value.startswith("embedded:") else resolve(value)

    for name in ("train", "valid", "test"):
        value = getattr(recipe.data, name)
        setattr(recipe.data, name, [resolve_data(v) for v in value] if isinstance(value, list) else resolve_data(value))
    if isinstance(recipe.data.E0s, str) and recipe.data.E0s.endswith(".json"):
        recipe.data.E0s = resolve(recipe.data.E0s)
    recipe.data.evaluate = {k: v if v.startswith("embedded:") else resolve(v) for k, v in recipe.data.evaluate.items()}
    replay = recipe.data.replay
    if isinstance(replay, str) and replay != "generate":
        recipe.data.replay = resolve_data(replay)
    elif isinstance(replay, dict) and replay.get("source", "generate") != "generate":
        recipe.data.replay = {**replay, "source": resolve_data(replay["source"])}
    recipe.output.directory = resolve(recipe.output.directory)


NOT_RESULTS = ("output.directory",)  # recipe paths whose change does not change a run's results


def recipe_differences(saved, current, where: str = "") -> list[str]:
    """``["train.lr: 0.01 -> 0.5", ...]``: where two recipe dicts differ, except in
    :data:`NOT_RESULTS`."""
    if where in NOT_RESULTS:
        return []
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in list(saved) + [k for k in current if k not in saved]:
            path = f"{where}.{key}" if where else str(key)
            if key not in current or key not in saved:
                out.append(f"{path}: {saved.get(key, '(absent)')!r} -> {current.get(key, '(absent)')!r}")
            else:
                out += recipe_differences(saved[key], current[key], path)
        return out
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [d for i, (a, b) in enumerate(zip(saved, current)) for d in recipe_differences(a, b, f"{where}[{i}]")]
    return [] if saved == current else [f"{where}: {_short(saved)} -> {_short(current)}"]


# keys added after runs could be saved, whose default is what those runs did: absent from a saved
# recipe.yaml they mean their default (not so for e.g. train.amsgrad: earlier runs used plain Adam)
ADDED_WITH_OLD_BEHAVIOUR = {
    "base": ("modality",),
    "train": (
        "loss",
        "huber_delta",
        "select_on",
        "lr_gamma",
        "eval_interval",
        "keep_checkpoints",
        "swa",
        "start_swa",
        "swa_lr",
        "swa_energy_weight",
        "swa_forces_weight",
        "swa_stress_weight",
    ),
}


def with_defaults(saved: dict) -> dict:
    """``saved`` (a run's ``recipe.yaml``) with the keys of :data:`ADDED_WITH_OLD_BEHAVIOUR` it
    lacks at their defaults, so resuming a run saved before they existed is no recipe change."""
    out = dict(saved)
    classes = {"base": BaseSection, "data": DataSection, "train": TrainSection, "output": OutputSection}
    for name, keys in ADDED_WITH_OLD_BEHAVIOUR.items():
        section = out.get(name)
        if isinstance(section, dict):
            defaults = dataclasses.asdict(classes[name]())
            out[name] = {**section, **{k: defaults[k] for k in keys if k not in section}}
    return out


def _short(value) -> str:
    text = repr(value) if not isinstance(value, (int, float, str)) or isinstance(value, bool) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def save_recipe(recipe: Recipe, path) -> None:
    """Write the resolved recipe as YAML (atomically)."""
    from .files import write_file_atomically

    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
    write_file_atomically(path, lambda tmp: tmp.write_text(text))
