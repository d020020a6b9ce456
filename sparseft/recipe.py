"""Recipes: YAML that maps one-to-one onto typed dataclasses.

Unknown keys are errors listing the valid ones, with the recipe path (``train.lr``). Key
names follow ``mace_run_train`` where one exists. A recipe never imports code.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .adapters import AdapterConfig, config_from_dict
from .heads.base import HeadError
from .heads.config import HeadConfig, head_config_from_dict
from .mace_facts import check_e0s_option


class RecipeError(ValueError):
    """A recipe that is malformed; the message names the recipe path of the problem."""


@dataclass
class BaseSection:
    """The base model: a ``.model`` path or ``embedded`` (the shipped mini-foundation)."""

    model: str = "embedded"
    dtype: str = "float64"
    device: str = "auto"
    head: typing.Optional[str] = None


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
    valid_fraction: float = 0.1
    test_fraction: float = 0.0
    split_seed: int = 0
    energy_key: typing.Optional[str] = "REF_energy"
    forces_key: typing.Optional[str] = "REF_forces"
    stress_key: typing.Optional[str] = "REF_stress"
    virials_key: typing.Optional[str] = "REF_virials"
    calculator_labels: str = "foundation"
    E0s: typing.Union[str, dict] = "foundation"
    evaluate: dict = field(default_factory=dict)


@dataclass
class TrainSection:
    """Optimiser, schedule, loss weights, sparsity schedule, EMA, clipping, early stopping."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    epochs: int = 20
    max_steps: typing.Optional[int] = None
    batch_size: int = 4
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    stress_weight: float = 1.0
    loss_weighting: str = "fixed"
    l1_schedule: str = "constant"
    target_density: typing.Optional[float] = None
    retrain_fraction: float = 0.3
    ema_decay: typing.Optional[float] = None
    clip_grad: typing.Optional[float] = 10.0
    patience: typing.Optional[int] = None
    seed: int = 0


@dataclass
class OutputSection:
    directory: str = "finetune-output"


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
    "train.scheduler": ("constant", "cosine", "plateau"),
    "train.l1_schedule": ("constant", "warmup"),
    "train.loss_weighting": ("fixed", "random"),
}


def _check_type(value, annotation, where: str):
    """Validate ``value`` against a simple annotation; ints are accepted for floats."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _check_type(value, option, where)
            except RecipeError as exc:
                errors.append(str(exc))
        names = " or ".join(getattr(a, "__name__", str(a)) for a in typing.get_args(hint))
        raise RecipeError(f"{where}: expected {names}, got {type(value).__name__} ({value!r})")
    if hint is type(None):
        if value is not None:
            raise RecipeError(f"{where}: expected null")
        return None
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {type(value).__name__} ({value!r})")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {type(value).__name__} ({value!r})")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {type(value).__name__} ({value!r})")
        return value
    if hint is list:  # lists in recipes are lists of file names
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RecipeError(f"{where}: expected a non-empty list of file names, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {type(value).__name__}")
        return value
    return value


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
            values[f.name] = _check_type(data[f.name], hints[f.name], path)
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
        raise RecipeError(f"{source or 'recipe'}: expected a mapping at the top level")
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


def _validate(recipe: Recipe) -> None:
    if not recipe.data.train:
        raise RecipeError("data.train: a training file is required")
    if not recipe.adapters and not recipe.heads:
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
    t = recipe.train
    if t.lr <= 0:
        raise RecipeError(f"train.lr: must be > 0, got {t.lr}")
    if t.epochs < 1:
        raise RecipeError(f"train.epochs: must be >= 1, got {t.epochs}")
    if t.batch_size < 1:
        raise RecipeError(f"train.batch_size: must be >= 1, got {t.batch_size}")
    if t.target_density is not None and not 0 < t.target_density <= 1:
        raise RecipeError(f"train.target_density: must be in (0, 1], got {t.target_density}")
    if not 0 <= t.retrain_fraction < 1:
        raise RecipeError(f"train.retrain_fraction: must be in [0, 1), got {t.retrain_fraction}")
    for name in ("valid_fraction", "test_fraction"):
        value = getattr(recipe.data, name)
        if not 0 <= value < 1:
            raise RecipeError(f"data.{name}: must be in [0, 1), got {value}")
    e0s = recipe.data.E0s
    problem = check_e0s_option(e0s, "data.E0s") if isinstance(e0s, str) else None
    if problem:
        raise RecipeError(problem)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``--set section.key=value`` overrides (values parsed as YAML)."""
    data = dict(data or {})
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"--set {item!r}: expected section.key=value")
        path, _, raw = item.partition("=")
        keys = path.strip().split(".")
        if len(keys) != 2:
            raise RecipeError(f"--set {item!r}: expected section.key=value, e.g. train.lr=1e-3")
        section, key = keys
        value = yaml.safe_load(raw)
        current = data.get(section) or {}
        if not isinstance(current, dict):
            raise RecipeError(f"--set {item!r}: section {section!r} is not a mapping")
        data[section] = {**current, key: value}
    return data


def load_recipe(path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file; relative data/model paths are resolved against the recipe's folder."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from exc
    data = apply_overrides(data, overrides or [])
    try:
        recipe = recipe_from_dict(data, source=str(path))
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from exc
    _resolve_paths(recipe, path.parent)
    return recipe


def _resolve_paths(recipe: Recipe, folder: Path) -> None:
    def resolve(value):
        if value is None or Path(value).is_absolute():
            return value
        return str((folder / value).resolve())

    if recipe.base.model != "embedded":
        recipe.base.model = resolve(recipe.base.model)

    def resolve_data(value):
        return value if not value or value.startswith("embedded:") else resolve(value)

    for name in ("train", "valid", "test"):
        value = getattr(recipe.data, name)
        setattr(recipe.data, name, [resolve_data(v) for v in value] if isinstance(value, list) else resolve_data(value))
    recipe.data.evaluate = {k: v if v.startswith("embedded:") else resolve(v) for k, v in recipe.data.evaluate.items()}
    recipe.output.directory = resolve(recipe.output.directory)


def save_recipe(recipe: Recipe, path) -> None:
    """Write the resolved recipe as YAML (atomically)."""
    from .files import write_file_atomically

    text = yaml.safe_dump(recipe.to_dict(), sort_keys=False)
    write_file_atomically(path, lambda tmp: tmp.write_text(text))
