"""A corpus of bad inputs, each with the one-line error it must produce.

Every case builds its files in its own folder and names the command line (or, for the Python
API, a call) to run. ``tests/test_bad_inputs.py`` runs them all in one process and checks: exit
code (2 bad input, 1 failed check/run), exactly one ``sparseft: error: ...`` line that matches
``expect`` (it names where: recipe path, file, frame, key), no traceback, and no outputs left.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ase.io
import numpy as np
import yaml

DELETE = object()


@dataclass
class Work:
    """Files shared by every case (made once per test module)."""

    root: Path
    model: Path  # tiny Cu/Au MACE
    other_model: Path  # same architecture, other weights (another base)
    data: Path  # 8 EMT frames of Cu/Au
    adapter: Path  # a valid sparse adapter of ``model``
    finished: Path  # the output directory of a finished fine-tune of GOOD
    frames: list = field(default_factory=list)

    def recipe(self, out: Path) -> dict:
        return {
            "base": {"model": str(self.model)},
            "data": {"train": str(self.data), "valid_fraction": 0.25},
            "adapters": [{"method": "sparse", "l1": 0.1}],
            "train": {"epochs": 1, "batch_size": 4, "lr": 0.01},
            "output": {"directory": str(out)},
        }


@dataclass
class Case:
    """``setup(folder, work)`` makes the files and returns the argv of ``sparseft`` (or a
    zero-argument callable, for Python API cases, that must raise)."""

    id: str
    setup: Callable
    expect: str  # regex the error line must match (after "sparseft: error: ")
    code: int = 2
    keep: tuple = ()  # paths (relative to the folder) that setup made and the run must leave as they were


CASES: list[Case] = []


def case(id, expect, code=2, keep=()):
    def register(setup):
        CASES.append(Case(id, setup, expect, code, keep))
        return setup

    return register


MOUNTS: list[Path] = []  # read-only tmpfs mounts made for root, unmounted by the runner


def make_read_only(path: Path) -> None:
    """A read-only folder: ``chmod 555``, or, for root (whom permissions do not stop), a
    read-only tmpfs mounted there; raises ``PermissionError`` when neither can be made."""
    import os
    import subprocess

    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        raise PermissionError(f"cannot make {path} read-only as root: {done.stderr.decode().strip()}")
    MOUNTS.append(path)


def set_path(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        key = int(key) if key.isdigit() else key
        node = node[key]
    last = int(keys[-1]) if keys[-1].isdigit() else keys[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def write_recipe(folder: Path, data, name="recipe.yaml") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def finetune(folder: Path, data, *extra) -> list[str]:
    return ["finetune", str(write_recipe(folder, data)), "--quiet", *extra]


# ---------------------------------------------------------------- recipes: values and types
RECIPE_VALUES = [  # (id, recipe path, value, expected where)
    ("clip_grad_negative", "train.clip_grad", -1, r"train\.clip_grad"),
    ("clip_grad_zero", "train.clip_grad", 0, r"train\.clip_grad"),
    ("energy_weight_negative", "train.energy_weight", -1.0, r"train\.energy_weight"),
    ("forces_weight_negative", "train.forces_weight", -10, r"train\.forces_weight"),
    ("stress_weight_nan", "train.stress_weight", float("nan"), r"train\.stress_weight"),
    ("max_steps_zero", "train.max_steps", 0, r"train\.max_steps"),
    ("max_steps_negative", "train.max_steps", -3, r"train\.max_steps"),
    ("ema_decay_above_one", "train.ema_decay", 1.5, r"train\.ema_decay"),
    ("ema_decay_negative", "train.ema_decay", -0.1, r"train\.ema_decay"),
    ("warmup_negative", "train.warmup_epochs", -2, r"train\.warmup_epochs"),
    ("lr_nan", "train.lr", float("nan"), r"train\.lr"),
    ("lr_inf", "train.lr", float("inf"), r"train\.lr"),
    ("lr_zero", "train.lr", 0, r"train\.lr"),
    ("lr_negative", "train.lr", -1e-3, r"train\.lr"),
    ("lr_string", "train.lr", "fast", r"train\.lr"),
    ("lr_list", "train.lr", [0.1], r"train\.lr"),
    ("lr_bool", "train.lr", True, r"train\.lr"),
    ("weight_decay_negative", "train.weight_decay", -0.01, r"train\.weight_decay"),
    ("epochs_zero", "train.epochs", 0, r"train\.epochs"),
    ("epochs_float", "train.epochs", 2.5, r"train\.epochs"),
    ("epochs_string", "train.epochs", "ten", r"train\.epochs"),
    ("batch_size_zero", "train.batch_size", 0, r"train\.batch_size"),
    ("target_density_zero", "train.target_density", 0.0, r"train\.target_density"),
    ("target_density_above_one", "train.target_density", 1.2, r"train\.target_density"),
    ("target_density_nan", "train.target_density", float("nan"), r"train\.target_density"),
    ("retrain_fraction_one", "train.retrain_fraction", 1.0, r"train\.retrain_fraction"),
    ("patience_negative", "train.patience", -1, r"train\.patience"),
    ("seed_negative", "train.seed", -5, r"train\.seed"),
    ("seed_float", "train.seed", 1.5, r"train\.seed"),
    ("optimizer_unknown", "train.optimizer", "sgd", r"train\.optimizer"),
    ("scheduler_unknown", "train.scheduler", "linear", r"train\.scheduler"),
    ("l1_schedule_unknown", "train.l1_schedule", "ramp", r"train\.l1_schedule"),
    ("loss_weighting_unknown", "train.loss_weighting", "uncertainty", r"train\.loss_weighting"),
    ("train_unknown_key", "train.learning_rate", 0.1, r"train: unknown key.*learning_rate"),
    ("valid_fraction_one", "data.valid_fraction", 1.0, r"data\.valid_fraction"),
    ("valid_fraction_negative", "data.valid_fraction", -0.1, r"data\.valid_fraction"),
    ("test_fraction_nan", "data.test_fraction", float("nan"), r"data\.test_fraction"),
    ("fractions_sum_to_one", "data.test_fraction", 0.75, r"data\.(valid|test)_fraction"),
    ("split_seed_negative", "data.split_seed", -1, r"data\.split_seed"),
    ("E0s_unknown_option", "data.E0s", "guess", r"data\.E0s"),
    ("E0s_list", "data.E0s", [1.0, 2.0], r"data\.E0s"),
    ("E0s_value_string", "data.E0s", {"Cu": "abc"}, r"data\.E0s\.Cu"),
    ("E0s_value_nan", "data.E0s", {"Cu": float("nan")}, r"data\.E0s\.Cu"),
    ("E0s_unknown_symbol", "data.E0s", {"Xx": 1.0}, r"data\.E0s.*Xx"),
    ("E0s_element_not_in_model", "data.E0s", {"Ag": -1.0}, r"data\.E0s.*Ag"),
    ("energy_key_number", "data.energy_key", 5, r"data\.energy_key"),
    ("calculator_labels_unknown", "data.calculator_labels", "dft", r"data\.calculator_labels"),
    ("evaluate_not_mapping", "data.evaluate", ["a.xyz"], r"data\.evaluate"),
    ("evaluate_reserved_name", "data.evaluate", {"train": "a.xyz"}, r"data\.evaluate"),
    ("train_empty_list", "data.train", [], r"data\.train"),
    ("train_list_of_numbers", "data.train", [1, 2], r"data\.train"),
    ("train_missing_file", "data.train", "nope.xyz", r"data\.train: .*nope\.xyz: no such data file"),
    ("valid_missing_file", "data.valid", "nope.xyz", r"data\.valid: .*nope\.xyz: no such data file"),
    ("evaluate_missing_file", "data.evaluate", {"extra": "nope.xyz"}, r"data\.evaluate\.extra: .*nope\.xyz"),
    ("train_is_directory", "data.train", ".", r"data\.train: .*is a directory, not a data file"),
    ("data_unknown_key", "data.forces", "F", r"data: unknown key.*forces"),
    ("base_dtype_unknown", "base.dtype", "float16", r"base\.dtype"),
    ("base_device_unknown", "base.device", "tpu", r"base\.device"),
    ("base_model_missing", "base.model", "missing.model", r"base\.model: .*missing\.model: no such file"),
    ("base_head_missing", "base.head", "dft", r"base\.head.*dft"),
    ("base_unknown_key", "base.path", "x", r"base: unknown key"),
    ("output_not_string", "output.directory", 3, r"output\.directory"),
    ("output_unknown_key", "output.dir", "x", r"output: unknown key"),
    ("adapters_not_list", "adapters", {"method": "sparse"}, r"adapters: expected a list"),
    ("adapter_no_method", "adapters.0", {"l1": 0.1}, r"adapters\[0\].*method"),
    ("adapter_unknown_method", "adapters.0.method", "dora", r"adapters\[0\]\.method"),
    ("adapter_unknown_key", "adapters.0.rank", 4, r"adapters\[0\]: unknown key.*rank"),
    ("adapter_not_mapping", "adapters.0", "sparse", r"adapters\[0\]"),
    ("l1_string", "adapters.0.l1", "abc", r"adapters\[0\]\.l1"),
    ("l1_negative", "adapters.0.l1", -0.1, r"adapters\[0\]\.l1"),
    ("l1_nan", "adapters.0.l1", float("nan"), r"adapters\[0\]\.l1"),
    ("l1_list", "adapters.0.l1", [0.1], r"adapters\[0\]\.l1"),
    ("select_layers_string", "adapters.0.select", {"layers": "abc"}, r"adapters\[0\]\.select\.layers"),
    ("select_layers_float", "adapters.0.select", {"layers": [0.5]}, r"adapters\[0\]\.select\.layers"),
    ("select_l_string", "adapters.0.select", {"l": ["x"]}, r"adapters\[0\]\.select\.l"),
    ("select_unknown_kind", "adapters.0.select", {"kinds": ["mlp"]}, r"adapters\[0\]\.select.*kind"),
    ("select_unknown_element", "adapters.0.select", {"elements": ["Xx"]}, r"adapters\[0\]\.select.*Xx"),
    ("select_bad_parity", "adapters.0.select", {"parity": ["x"]}, r"adapters\[0\]\.select.*parity"),
    ("select_unknown_key", "adapters.0.select", {"layer_index": 1}, r"adapters\[0\]\.select: unknown key"),
    ("select_matches_nothing", "adapters.0.select", {"layers": [7]}, r"adapters\[0\].*matches no block"),
    (
        "select_element_not_in_model",
        "adapters.0.select",
        {"elements": ["O"], "kinds": ["skip"]},
        r"adapters\[0\].*names O, which the model neither has nor adds",
    ),
    ("select_not_mapping", "adapters.0.select", 5, r"adapters\[0\]\.select"),
    ("lora_rank_zero", "adapters.0", {"method": "lora", "rank": 0}, r"adapters\[0\]\.rank"),
    ("lora_rank_float", "adapters.0", {"method": "lora", "rank": 2.5}, r"adapters\[0\]\.rank"),
    ("lora_rank_string", "adapters.0", {"method": "lora", "rank": "four"}, r"adapters\[0\]\.rank"),
    ("lora_scale_inf", "adapters.0", {"method": "lora", "scale": float("inf")}, r"adapters\[0\]\.scale"),
    (
        "two_adapters_one_block",
        "adapters",
        [{"method": "sparse"}, {"method": "freeze"}],
        r"adapters\[1\].*adapters\[0\]|claim",
    ),
    ("heads_not_list", "heads", {"name": "a"}, r"heads: expected a list"),
    ("head_bad_kind", "heads", [{"name": "spin", "kind": "charge"}], r"heads\[0\]\.kind"),
    ("head_bad_name", "heads", [{"name": "1x", "kind": "magmom"}], r"heads\[0\]\.name"),
    (
        "head_weight_nan",
        "heads",
        [{"name": "spin", "kind": "magmom", "magmoms_weight": float("nan")}],
        r"heads\[0\]\.magmoms_weight",
    ),
    (
        "head_weight_inf",
        "heads",
        [{"name": "spin", "kind": "magmom", "magmoms_weight": float("inf")}],
        r"heads\[0\]\.magmoms_weight",
    ),
    ("head_hidden_zero", "heads", [{"name": "spin", "kind": "magmom", "hidden": 0}], r"heads\[0\]\.hidden"),
    ("head_E0s_bad", "heads", [{"name": "dft", "kind": "energy", "E0s": "guess"}], r"heads\[0\]\.E0s"),
    ("head_E0s_value_string", "heads", [{"name": "dft", "kind": "energy", "E0s": {"Cu": "x"}}], r"heads\[0\]\.E0s\.Cu"),
    (
        "head_duplicate_names",
        "heads",
        [{"name": "a", "kind": "magmom"}, {"name": "a", "kind": "magmom"}],
        r"heads: .*unique",
    ),
    ("head_no_labels", "heads", [{"name": "spin", "kind": "magmom"}], r"heads\[0\] \(spin\): no training frame"),
]

for _id, _path, _value, _expect in RECIPE_VALUES:

    def _setup(folder, work, path=_path, value=_value):
        return finetune(folder, set_path(work.recipe(folder / "out"), path, value))

    CASES.append(Case(f"recipe.{_id}", _setup, _expect))


@case("recipe.binary", r"recipe\.yaml: .*expected a YAML mapping")
def _(folder, work):
    path = folder / "recipe.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    return ["finetune", str(path)]


@case("recipe.binary_gzip", r"recipe\.yaml: .*expected a YAML mapping")
def _(folder, work):
    import gzip

    path = folder / "recipe.yaml"
    path.write_bytes(gzip.compress(b"base: {}\n" * 50))
    return ["finetune", str(path)]


@case("recipe.top_level_list", r"recipe\.yaml: expected a YAML mapping")
def _(folder, work):
    return finetune(folder, "- base\n- data\n")


@case("recipe.top_level_scalar", r"recipe\.yaml: expected a YAML mapping")
def _(folder, work):
    return finetune(folder, "just a string\n")


@case("recipe.empty_file", r"recipe\.yaml: data\.train")
def _(folder, work):
    return finetune(folder, "")


@case("recipe.yaml_syntax", r"recipe\.yaml: not valid YAML.*line")
def _(folder, work):
    return finetune(folder, "base: {model: [\n")


@case("recipe.tabs", r"recipe\.yaml: not valid YAML")
def _(folder, work):
    return finetune(folder, "train:\n\tlr: 1\n")


@case("recipe.unknown_section", r"recipe\.yaml: unknown section.*training")
def _(folder, work):
    return finetune(folder, {**work.recipe(folder / "out"), "training": {}})


@case("recipe.section_not_mapping", r"recipe\.yaml: train: expected a mapping")
def _(folder, work):
    return finetune(folder, {**work.recipe(folder / "out"), "train": [1, 2]})


@case("recipe.missing_file", r"nope\.yaml: no such recipe file")
def _(folder, work):
    return ["finetune", str(folder / "nope.yaml")]


@case("recipe.is_directory", r"recipe: .*no such recipe file|is a directory")
def _(folder, work):
    (folder / "recipe").mkdir()
    return ["finetune", str(folder / "recipe")]


@case("recipe.no_adapters_no_heads", r"adapters: at least one adapter")
def _(folder, work):
    return finetune(folder, set_path(work.recipe(folder / "out"), "adapters", []))


@case("recipe.no_train", r"data\.train: a training file is required")
def _(folder, work):
    return finetune(folder, set_path(work.recipe(folder / "out"), "data.train", DELETE))


@case("recipe.cuda_without_gpu", r"base\.device: cuda|no such recipe file")
def _(folder, work):
    from sparseft._compat import torch

    if torch.cuda.is_available():  # the case needs a machine without a GPU
        return ["finetune", str(folder / "no-gpu-here.yaml")]
    return finetune(folder, set_path(work.recipe(folder / "out"), "base.device", "cuda"))


# ---------------------------------------------------------------- --set overrides
SET_CASES = [  # (id, --set value, expected)
    ("yaml_error", "train.lr=[", r"^--set 'train\.lr=\[': not valid YAML"),
    ("yaml_error_brace", "train.lr={", r"--set 'train\.lr=\{': not valid YAML"),
    ("no_equals", "train.lr", r"--set 'train\.lr': expected section\.key=value"),
    ("no_section", "lr=1", r"--set 'lr=1': expected section\.key=value"),
    ("too_deep", "train.lr.x=1", r"--set 'train\.lr\.x=1'"),
    # a bad value is blamed on the --set that gave it, not on the recipe file (issue 21, item 8)
    ("unknown_section", "training.lr=1", r"^--set 'training\.lr=1': unknown section.*training"),
    ("unknown_key", "train.rate=1", r"^--set 'train\.rate=1': train: unknown key.*rate"),
    ("bad_value", "train.lr=abc", r"^--set 'train\.lr=abc': train\.lr"),
    ("inf_value", "train.lr=.inf", r"^--set 'train\.lr=\.inf': train\.lr"),
    ("nan_value", "train.lr=.nan", r"^--set 'train\.lr=\.nan': train\.lr"),
    ("negative_epochs", "train.epochs=-1", r"^--set 'train\.epochs=-1': train\.epochs"),
    ("section_not_mapping", "adapters.l1=1", r"--set 'adapters\.l1=1': section 'adapters' is not a mapping"),
    ("empty_key", "train.=1", r"--set 'train\.=1'"),
]

for _id, _value, _expect in SET_CASES:

    def _setup(folder, work, value=_value):
        return finetune(folder, work.recipe(folder / "out"), "--set", value)

    CASES.append(Case(f"set.{_id}", _setup, _expect))


# ---------------------------------------------------------------- data files
def data_case(id, expect, make):
    """``make(frames) -> frames | text``; written as the training file ``data.xyz``."""

    def setup(folder, work):
        frames = [a.copy() for a in work.frames]
        for a, b in zip(frames, work.frames):
            a.info, a.arrays = copy.deepcopy(b.info), {k: v.copy() for k, v in b.arrays.items()}
        result = make(frames)
        path = folder / "data.xyz"
        if isinstance(result, (str, bytes)):
            (path.write_bytes if isinstance(result, bytes) else path.write_text)(result)
        else:
            ase.io.write(path, result, format="extxyz")
        return finetune(folder, set_path(work.recipe(folder / "out"), "data.train", str(path)))

    CASES.append(Case(f"data.{id}", setup, expect))


def _edit(frames, i, fn):
    fn(frames[i])
    return frames


def _text(frames):
    import io

    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    return buffer.getvalue()


def _replace_symbol(frames, frame: int, symbol: str):
    lines = _text(frames).splitlines()
    n = len(frames[0])
    first_atom = frame * (n + 2) + 2
    lines[first_atom] = symbol + lines[first_atom][2:]
    return "\n".join(lines) + "\n"


def _set_info(key, value):
    return lambda a: a.info.__setitem__(key, value)


DATA = "data\\.train: .*data\\.xyz"
data_case("energy_bool", rf"{DATA}: frame 2: REF_energy", lambda f: _edit(f, 2, _set_info("REF_energy", True)))
data_case("energy_vector", rf"{DATA}: frame 1: REF_energy", lambda f: _edit(f, 1, _set_info("REF_energy", np.ones(3))))
data_case("energy_string", rf"{DATA}: frame 3: REF_energy", lambda f: _edit(f, 3, _set_info("REF_energy", "high")))
data_case("energy_nan", rf"{DATA}: frame 0: REF_energy", lambda f: _edit(f, 0, _set_info("REF_energy", float("nan"))))
data_case("energy_inf", rf"{DATA}: frame 4: REF_energy", lambda f: _edit(f, 4, _set_info("REF_energy", float("inf"))))
data_case(
    "stress_two_values", rf"{DATA}: frame 1: REF_stress", lambda f: _edit(f, 1, _set_info("REF_stress", np.ones(2)))
)
data_case(
    "stress_four_values", rf"{DATA}: frame 2: REF_stress", lambda f: _edit(f, 2, _set_info("REF_stress", np.ones(4)))
)
data_case("stress_string", rf"{DATA}: frame 2: REF_stress", lambda f: _edit(f, 2, _set_info("REF_stress", "x")))
data_case(
    "stress_nan", rf"{DATA}: frame 5: REF_stress", lambda f: _edit(f, 5, _set_info("REF_stress", np.full(9, np.nan)))
)
data_case(
    "virials_bad_shape", rf"{DATA}: frame 0: REF_virials", lambda f: _edit(f, 0, _set_info("REF_virials", np.ones(5)))
)
data_case(
    "forces_nan",
    rf"{DATA}: frame 6: REF_forces",
    lambda f: _edit(f, 6, lambda a: a.arrays["REF_forces"].__setitem__((0, 0), np.nan)),
)
data_case(
    "forces_wrong_width",
    rf"{DATA}: frame 3: REF_forces",
    lambda f: _edit(f, 3, lambda a: a.arrays.__setitem__("REF_forces", np.ones((len(a), 2)))),
)
data_case(
    "positions_nan",
    rf"{DATA}: frame 2: positions",
    lambda f: _edit(f, 2, lambda a: a.positions.__setitem__((1, 1), np.nan)),
)
data_case(
    "positions_inf",
    rf"{DATA}: frame 7: positions",
    lambda f: _edit(f, 7, lambda a: a.positions.__setitem__((0, 2), np.inf)),
)
data_case(
    "coincident_atoms",
    rf"{DATA}: frame 4: atoms 0 and 1 .*apart",
    lambda f: _edit(f, 4, lambda a: a.positions.__setitem__(1, a.positions[0])),
)
data_case(
    "coincident_periodic_image",
    rf"{DATA}: frame 5: atoms 0 and 1 .*apart",
    lambda f: _edit(f, 5, lambda a: a.positions.__setitem__(1, a.positions[0] + a.cell[0])),
)
data_case(
    "zero_volume_cell",
    rf"{DATA}: frame 1: .*zero volume",
    lambda f: _edit(f, 1, lambda a: a.set_cell(np.diag([3.6, 3.6, 0.0]))),
)
data_case("cell_nan", rf"{DATA}: frame 1: cell", lambda f: _edit(f, 1, lambda a: a.set_cell(np.full((3, 3), np.nan))))
data_case("unknown_symbol", rf"{DATA}.*frame 3.*Xx", lambda f: _replace_symbol(f, 3, "Xx"))
data_case(
    "element_not_in_model",
    rf"{DATA}: elements the base model does not know: Ag \(frames 2\)",
    lambda f: _edit(f, 2, lambda a: a.__getitem__(0).__setattr__("symbol", "Ag")),
)
data_case("empty_file", rf"{DATA}: contains no frames", lambda f: "")
data_case("binary_file", rf"{DATA}: cannot read", lambda f: bytes(range(256)) * 8)
data_case("not_structures", rf"{DATA}: cannot read", lambda f: "hello world\nthis is not xyz\n")
data_case("truncated_frame", rf"{DATA}.*frame 7", lambda f: "\n".join(_text(f).splitlines()[:-2]) + "\n")
data_case(
    "no_labels",
    r"data\.xyz: no frame has REF_energy or REF_forces",
    lambda f: [
        _edit(f, i, lambda a: (a.info.pop("REF_energy"), a.arrays.pop("REF_forces"), a.info.pop("REF_stress")))
        for i in range(len(f))
    ][-1],
)
data_case("too_few_for_split", r"data\.xyz: 1 frames are too few", lambda f: f[:1])


@case("data.magmom_head_bad_shape", r"data\.train: .*data\.xyz: frame 1: REF_magmoms has shape")
def _(folder, work):
    frames = [a.copy() for a in work.frames]
    for a in frames:
        a.arrays["REF_magmoms"] = np.zeros(len(a))
    frames[1].arrays["REF_magmoms"] = np.zeros((len(frames[1]), 3))
    ase.io.write(folder / "data.xyz", frames, format="extxyz")
    recipe = set_path(work.recipe(folder / "out"), "data.train", str(folder / "data.xyz"))
    recipe["heads"] = [{"name": "spin", "kind": "magmom"}]
    return finetune(folder, recipe)


@case("data.total_magmom_vector", r"data\.train: .*data\.xyz: frame 2: REF_total_magmom")
def _(folder, work):
    frames = [a.copy() for a in work.frames]
    for a in frames:
        a.arrays["REF_magmoms"] = np.zeros(len(a))
        a.info["REF_total_magmom"] = 0.0
    frames[2].info["REF_total_magmom"] = np.ones(3)
    ase.io.write(folder / "data.xyz", frames, format="extxyz")
    recipe = set_path(work.recipe(folder / "out"), "data.train", str(folder / "data.xyz"))
    recipe["heads"] = [{"name": "spin", "kind": "magmom"}]
    return finetune(folder, recipe)


@case("data.valid_file_bad", r"data\.valid: .*valid\.xyz: frame 0: REF_energy")
def _(folder, work):
    frames = [a.copy() for a in work.frames[:2]]
    frames[0].info["REF_energy"] = "x"
    ase.io.write(folder / "valid.xyz", frames, format="extxyz")
    return finetune(folder, set_path(work.recipe(folder / "out"), "data.valid", str(folder / "valid.xyz")))


@case("data.replay_list_second_bad", r"data\.train\[1\]: .*b\.xyz: frame 0: positions")
def _(folder, work):
    ase.io.write(folder / "a.xyz", work.frames, format="extxyz")
    bad = [a.copy() for a in work.frames[:2]]
    bad[0].positions[0, 0] = np.nan
    ase.io.write(folder / "b.xyz", bad, format="extxyz")
    return finetune(
        folder, set_path(work.recipe(folder / "out"), "data.train", [str(folder / "a.xyz"), str(folder / "b.xyz")])
    )


# ---------------------------------------------------------------- issue 21: no silent wrong answers
# 3: a label key that names nothing in a file, or a per-atom array where a per-frame value belongs
KEY_CASES = [  # (id, recipe path, key, expected)
    ("energy_key_misspelled", "data.energy_key", "REF_enrgy", rf"{DATA}: data\.energy_key 'REF_enrgy' is in no frame"),
    (
        "energy_key_per_atom",
        "data.energy_key",
        "REF_forces",
        rf"{DATA}: frame 0: data\.energy_key 'REF_forces' names a per-atom array",
    ),
    (
        "forces_key_per_frame",
        "data.forces_key",
        "REF_energy",
        rf"{DATA}: frame 0: data\.forces_key 'REF_energy' names a per-frame value",
    ),
    (
        "stress_key_misspelled",
        "data.stress_key",
        "stress_dft",
        rf"{DATA}: data\.stress_key 'stress_dft' is in no frame.*REF_stress",
    ),
    (
        "virials_key_per_atom",
        "data.virials_key",
        "REF_forces",
        rf"{DATA}: frame 0: data\.virials_key 'REF_forces' names a per-atom array",
    ),
]

for _id, _path, _key, _expect in KEY_CASES:

    def _setup(folder, work, path=_path, key=_key):
        return finetune(folder, set_path(work.recipe(folder / "out"), path, key))

    CASES.append(Case(f"data.{_id}", _setup, _expect))


@case("data.energy_key_missing_from_valid", r"data\.valid: .*valid\.xyz: data\.energy_key 'DFT_energy' is in no frame")
def _(folder, work):
    frames = [a.copy() for a in work.frames]
    for a in frames:
        a.info["DFT_energy"] = a.info.pop("REF_energy")
    ase.io.write(folder / "train.xyz", frames, format="extxyz")
    ase.io.write(folder / "valid.xyz", work.frames[:2], format="extxyz")  # REF_energy only
    recipe = set_path(work.recipe(folder / "out"), "data.train", str(folder / "train.xyz"))
    recipe["data"].update({"valid": str(folder / "valid.xyz"), "energy_key": "DFT_energy"})
    return finetune(folder, recipe)


@case("data.head_energy_key_misspelled", r"data\.train: .*heads\[0\]\.energy_key 'DFT_enrgy' is in no frame")
def _(folder, work):
    recipe = work.recipe(folder / "out")
    recipe["heads"] = [{"name": "dft", "kind": "energy", "energy_key": "DFT_enrgy"}]
    return finetune(folder, recipe)


# 5: an evaluation set without labels
@case("data.valid_unlabelled", r"data\.valid: .*valid\.xyz: no frame carries a label")
def _(folder, work):
    frames = [a.copy() for a in work.frames[:3]]
    for a in frames:
        a.info.clear()
        a.arrays.pop("REF_forces", None)
    ase.io.write(folder / "valid.xyz", frames, format="extxyz")
    return finetune(folder, set_path(work.recipe(folder / "out"), "data.valid", str(folder / "valid.xyz")))


@case("data.valid_split_unlabelled", r"data\.valid_fraction: the 2 frames held out of .*data\.xyz carry no label")
def _(folder, work):
    held_out = np.random.default_rng(0).permutation(len(work.frames))[:2]  # sparseft.data.split, split_seed 0
    frames = [a.copy() for a in work.frames]
    for i in held_out:
        frames[i].info.clear()
        frames[i].arrays.pop("REF_forces")
    ase.io.write(folder / "data.xyz", frames, format="extxyz")
    return finetune(folder, set_path(work.recipe(folder / "out"), "data.train", str(folder / "data.xyz")))


# 6: a frame whose neighbour list would explode: refused before any graph is built
def _vacuum(a):
    a.set_cell(np.diag([1e4, 1e4, 1e4]), scale_atoms=False)


def _crushed(a):
    a.set_cell(np.diag([0.3, 0.3, 0.3]), scale_atoms=True)


def _far_apart(a):
    a.pbc = False
    a.positions[1] = [1e6, 0, 0]


data_case("cell_huge", rf"{DATA}: frame 3: .*neighbour search .*cells", lambda f: _edit(f, 3, _vacuum))
data_case("cell_crushed", rf"{DATA}: frame 2: about \d+ neighbours per atom", lambda f: _edit(f, 2, _crushed))
data_case("molecule_far_apart", rf"{DATA}: frame 5: .*neighbour search .*cells", lambda f: _edit(f, 5, _far_apart))


# ---------------------------------------------------------------- model files
def model_case(id, expect, make, command="inspect"):
    def setup(folder, work):
        path = folder / "base.model"
        make(path, work)
        if command == "finetune":
            return finetune(folder, set_path(work.recipe(folder / "out"), "base.model", str(path)))
        return [command, str(path)]

    CASES.append(Case(f"model.{id}.{command}", setup, expect))


def _pickle(obj):
    def make(path, work):
        from sparseft._compat import torch

        torch.save(obj() if callable(obj) else obj, path)

    return make


def _truncated(path, work):
    path.write_bytes(work.model.read_bytes()[:5000])


for _command in ("inspect", "check", "finetune"):
    _where = r"base\.model: .*base\.model" if _command == "finetune" else r".*base\.model"
    model_case("empty", rf"{_where}: not a readable torch model file", lambda p, w: p.write_bytes(b""), _command)
    model_case("text", rf"{_where}: not a readable torch model file", lambda p, w: p.write_text("hello"), _command)
    model_case("truncated", rf"{_where}: not a readable torch model file", _truncated, _command)
    model_case("state_dict", rf"{_where}: holds a dict", _pickle({"a": 1}), _command)
    model_case("linear", rf"{_where}: holds a Linear", _pickle(lambda: __import__("torch").nn.Linear(2, 2)), _command)
    model_case("directory", rf"{_where}: (no such file|is a directory|not a file)", lambda p, w: p.mkdir(), _command)
model_case("missing", r"base\.model: no such file", lambda p, w: None, "inspect")


@case("model.wrong_head.inspect", r"head 'dft' not found")
def _(folder, work):
    return ["inspect", str(work.model), "--head", "dft"]


# ---------------------------------------------------------------- adapter directories
def adapter_case(id, expect, tamper, rehash=True):
    """Copy the good adapter, ``tamper(folder, meta, tensors)``, re-record the hash (an edit
    that a hash cannot catch), then ``sparseft check MODEL --adapter``."""

    def setup(folder, work):
        from safetensors.torch import load_file, save_file

        from sparseft.io import sha256_file

        target = folder / "adapter"
        shutil.copytree(work.adapter, target)
        meta = json.loads((target / "sparseft.json").read_text())
        tensors = load_file(str(target / "adapter.safetensors"))
        result = tamper(target, meta, tensors, work)
        if result != "raw":
            save_file(tensors, str(target / "adapter.safetensors"))
            if rehash:
                meta["tensors_sha256"] = sha256_file(target / "adapter.safetensors")
            (target / "sparseft.json").write_text(json.dumps(meta))
        model = work.other_model if result == "other" else work.model
        return ["check", str(model), "--adapter", str(target)]

    CASES.append(Case(f"adapter.{id}", setup, expect))


def _values(tensors):
    return next(k for k in tensors if k.endswith("/values"))


def _poison(value):
    def tamper(d, meta, tensors, work):
        key = _values(tensors)
        tensors[key] = tensors[key].clone()
        tensors[key][0] = value

    return tamper


ADAPTER = r".*adapter"
adapter_case("values_nan", rf"{ADAPTER}.*values.*(NaN|non-finite)", _poison(float("nan")))
adapter_case("values_inf", rf"{ADAPTER}.*values.*(NaN|non-finite)", _poison(float("inf")))
adapter_case("values_huge", rf"{ADAPTER}: the loaded adapter does not reproduce", _poison(1e6))
adapter_case(
    "reference_null", rf"{ADAPTER}.*sparseft\.json: reference", lambda d, m, t, w: m.__setitem__("reference", None)
)
adapter_case(
    "reference_energy_string",
    rf"{ADAPTER}.*sparseft\.json: reference\.energy",
    lambda d, m, t, w: m["reference"].__setitem__("energy", "high"),
)
adapter_case(
    "reference_energy_nan",
    rf"{ADAPTER}.*sparseft\.json: reference\.energy",
    lambda d, m, t, w: m["reference"].__setitem__("energy", float("nan")),
)
adapter_case(
    "reference_forces_null",
    rf"{ADAPTER}.*sparseft\.json: reference\.forces",
    lambda d, m, t, w: m["reference"].__setitem__("forces", None),
)
adapter_case(
    "reference_forces_shape",
    rf"{ADAPTER}.*sparseft\.json: reference\.forces",
    lambda d, m, t, w: m["reference"].__setitem__("forces", [[1.0, 2.0]]),
)
adapter_case(
    "reference_forces_nan",
    rf"{ADAPTER}.*sparseft\.json: reference\.forces",
    lambda d, m, t, w: m["reference"]["forces"][0].__setitem__(0, float("nan")),
)
adapter_case(
    "reference_missing_energy",
    rf"{ADAPTER}.*sparseft\.json: reference\.energy",
    lambda d, m, t, w: m["reference"].pop("energy"),
)
adapter_case("hash_mismatch", rf"{ADAPTER}.*does not match the sha256", _poison(0.5), rehash=False)
adapter_case(
    "truncated",
    rf"{ADAPTER}.*adapter\.safetensors: content does not match the sha256",
    lambda d, m, t, w: ((d / "adapter.safetensors").write_bytes((d / "adapter.safetensors").read_bytes()[:100]), "raw")[
        1
    ],
)
adapter_case(
    "tensor_file_missing",
    rf"{ADAPTER}.*adapter\.safetensors: missing",
    lambda d, m, t, w: ((d / "adapter.safetensors").unlink(), "raw")[1],
)
adapter_case(
    "json_missing",
    rf"{ADAPTER}.*sparseft\.json: missing",
    lambda d, m, t, w: ((d / "sparseft.json").unlink(), "raw")[1],
)
adapter_case(
    "json_garbage",
    rf"{ADAPTER}.*sparseft\.json: not valid JSON",
    lambda d, m, t, w: ((d / "sparseft.json").write_text("{oops"), "raw")[1],
)
adapter_case(
    "json_list",
    rf"{ADAPTER}.*sparseft\.json: not a sparseft adapter file",
    lambda d, m, t, w: ((d / "sparseft.json").write_text("[1, 2]"), "raw")[1],
)
adapter_case("version_bump", rf"{ADAPTER}.*format version 99", lambda d, m, t, w: m.__setitem__("format_version", 99))
adapter_case("missing_base_key", rf"{ADAPTER}.*required key 'base'", lambda d, m, t, w: m.pop("base"))
adapter_case("other_base", rf"{ADAPTER}: this adapter was made for another base model", lambda d, m, t, w: "other")
adapter_case(
    "extra_tensor",
    rf"{ADAPTER}.*belong to no adapter",
    lambda d, m, t, w: t.__setitem__("ghost/x/values", __import__("torch").zeros(3)),
)
adapter_case(
    "unknown_method",
    rf"{ADAPTER}.*adapters\[0\]\.method",
    lambda d, m, t, w: m["adapters"][0].__setitem__("method", "dora"),
)
adapter_case(
    "config_l1_string", rf"{ADAPTER}.*adapters\[0\]\.l1", lambda d, m, t, w: m["adapters"][0].__setitem__("l1", "abc")
)


def _shift_sparse_indices(tensors: dict, shift: int) -> None:
    """Move the first sparse part's stored indices (``indices``, or uint16 ``index_gaps``) by ``shift``."""
    from sparseft.adapters.sparse import _decode_indices

    key = next(k for k in tensors if k.endswith(("/indices", "/index_gaps")))
    prefix = key.rsplit("/", 1)[0]
    flat = _decode_indices({key.rsplit("/", 1)[1]: tensors.pop(key)})
    tensors[prefix + "/indices"] = (flat.long() + shift).to(__import__("torch").int32)


adapter_case(
    "indices_out_of_range",
    rf"{ADAPTER}.*indices",
    lambda d, m, t, w: _shift_sparse_indices(t, 10**6),
)
adapter_case("heads_damaged", rf"{ADAPTER}.*heads\[0\]", lambda d, m, t, w: m.__setitem__("heads", [{"name": "x"}]))
adapter_case(
    "buffer_nan",
    rf"{ADAPTER}.*buffers/.*(NaN|non-finite)",
    lambda d, m, t, w: t.__setitem__(
        "buffers/atomic_energies_fn.atomic_energies",
        __import__("torch").full((2,), float("nan"), dtype=__import__("torch").float64),
    ),
)


@case("adapter.not_a_directory", r"nothere: not an adapter directory")
def _(folder, work):
    return ["check", str(work.model), "--adapter", str(folder / "nothere")]


@case("adapter.is_a_file", r"file\.txt: not an adapter directory")
def _(folder, work):
    (folder / "file.txt").write_text("x")
    return ["check", str(work.model), "--adapter", str(folder / "file.txt")]


# ---------------------------------------------------------------- output directories
@case("output.is_a_file", r"output\.directory: .*out is a file", keep=("out",))
def _(folder, work):
    (folder / "out").write_text("mine")
    return finetune(folder, work.recipe(folder / "out"))


@case("output.parent_is_a_file", r"output\.directory: .*", keep=("file",))
def _(folder, work):
    (folder / "file").write_text("mine")
    return finetune(folder, work.recipe(folder / "file" / "out"))


@case("output.read_only", r"output\.directory: .*ro.* not writable", keep=("ro",))
def _(folder, work):
    make_read_only(folder / "ro")
    return finetune(folder, work.recipe(folder / "ro" / "out"))


@case("output.read_only_existing_empty", r"output\.directory: .*out.* not writable", keep=("out",))
def _(folder, work):
    make_read_only(folder / "out")
    return finetune(folder, work.recipe(folder / "out"))


@case("output.not_empty", r".*out is not empty; use --resume.*or --overwrite", keep=("out",))
def _(folder, work):
    (folder / "out").mkdir()
    (folder / "out" / "mine.txt").write_text("user data")
    return finetune(folder, work.recipe(folder / "out"))


@case("output.resume_without_checkpoint", r"--resume: .*out holds no checkpoint", keep=("out",))
def _(folder, work):
    (folder / "out").mkdir()
    return finetune(folder, work.recipe(folder / "out"), "--resume")


@case("output.resume_missing_directory", r"--resume: .*out holds no checkpoint")
def _(folder, work):
    return finetune(folder, work.recipe(folder / "out"), "--resume")


@case("output.resume_and_overwrite", r"--resume and --overwrite")
def _(folder, work):
    return finetune(folder, work.recipe(folder / "out"), "--resume", "--overwrite")


def _finished_copy(folder, work):
    shutil.copytree(work.finished, folder / "out")
    return yaml.safe_load((work.finished / "recipe.yaml").read_text())


@case(
    "output.resume_changed_lr",
    r"--resume: the recipe differs from .*recipe\.yaml.*train\.lr: 0\.01 -> 0\.5",
    keep=("out",),
)
def _(folder, work):
    recipe = _finished_copy(folder, work)
    recipe["output"]["directory"] = str(folder / "out")
    return finetune(folder, recipe, "--resume", "--set", "train.lr=0.5")


@case("output.resume_changed_data", r"--resume: the recipe differs .*data\.train", keep=("out",))
def _(folder, work):
    recipe = _finished_copy(folder, work)
    recipe["output"]["directory"] = str(folder / "out")
    ase.io.write(folder / "other.xyz", work.frames[:6], format="extxyz")
    recipe["data"]["train"] = str(folder / "other.xyz")
    return finetune(folder, recipe, "--resume")


@case("output.resume_changed_adapter", r"--resume: the recipe differs .*adapters", keep=("out",))
def _(folder, work):
    recipe = _finished_copy(folder, work)
    recipe["output"]["directory"] = str(folder / "out")
    recipe["adapters"][0]["l1"] = 0.5
    return finetune(folder, recipe, "--resume")


@case("output.resume_recipe_yaml_missing", r"--resume: .*recipe\.yaml", keep=("out",))
def _(folder, work):
    recipe = _finished_copy(folder, work)
    recipe["output"]["directory"] = str(folder / "out")
    (folder / "out" / "recipe.yaml").unlink()
    return finetune(folder, recipe, "--resume")


@case("output.resume_checkpoint_damaged", r"--resume: .*checkpoint.*(damaged|no complete)", keep=("out",))
def _(folder, work):
    recipe = _finished_copy(folder, work)
    recipe["output"]["directory"] = str(folder / "out")
    for f in (folder / "out" / "checkpoint").rglob("tensors.safetensors"):
        f.write_bytes(f.read_bytes()[:200])
    return finetune(folder, recipe, "--resume")


# ---------------------------------------------------------------- check / inspect / tiny-model
def _xyz(folder, frames):
    path = folder / "s.xyz"
    if isinstance(frames, (str, bytes)):
        (path.write_bytes if isinstance(frames, bytes) else path.write_text)(frames)
    else:
        ase.io.write(path, frames, format="extxyz")
    return path


def structures_case(id, expect, make):
    def setup(folder, work):
        frames = [a.copy() for a in work.frames[:3]]
        return ["check", str(work.model), "--structures", str(_xyz(folder, make(frames)))]

    CASES.append(Case(f"check.{id}", setup, expect))


structures_case("empty_file", r"s\.xyz: contains no frames", lambda f: "")
structures_case("binary_file", r"s\.xyz: cannot read", lambda f: bytes(range(256)) * 8)
structures_case(
    "positions_nan",
    r"s\.xyz: frame 1: positions",
    lambda f: _edit(f, 1, lambda a: a.positions.__setitem__((0, 0), np.nan)),
)
structures_case(
    "coincident",
    r"s\.xyz: frame 2: atoms 0 and 1",
    lambda f: _edit(f, 2, lambda a: a.positions.__setitem__(1, a.positions[0])),
)
structures_case(
    "unknown_element",
    r"s\.xyz: frame 0: .*O.*the model's elements are Cu Au",
    lambda f: _edit(f, 0, lambda a: a.__getitem__(0).__setattr__("symbol", "O")),
)
structures_case("empty_structure", r"s\.xyz: frame 0: no atoms", lambda f: [f[0][[]], *f[1:]])


@case("check.structures_missing", r"nope\.xyz: no such (data )?file")
def _(folder, work):
    return ["check", str(work.model), "--structures", str(folder / "nope.xyz")]


@case("inspect.bad_selector", r"unknown kind")
def _(folder, work):
    return ["inspect", str(work.model), "--select", "kinds=nope"]


@case("inspect.selector_no_equals", r"selector term 'skip'")
def _(folder, work):
    return ["inspect", str(work.model), "--select", "skip"]


@case("inspect.selector_bad_layer", r"selector.*layers.*'x'")
def _(folder, work):
    return ["inspect", str(work.model), "--select", "layers=x"]


@case("inspect.selector_matches_nothing", r"matches no block")
def _(folder, work):
    return ["inspect", str(work.model), "--select", "layers=9"]


@case("cli.unknown_command", r"invalid choice: 'train'")
def _(folder, work):
    return ["train"]


@case("cli.missing_argument", r"the following arguments are required: recipe")
def _(folder, work):
    return ["finetune"]


@case("cli.bad_dtype_choice", r"--dtype: invalid choice")
def _(folder, work):
    return ["inspect", str(work.model), "--dtype", "half"]


@case("cli.bad_seed", r"--seed: invalid int value")
def _(folder, work):
    return ["check", str(work.model), "--seed", "x"]


@case("tiny_model.missing_directory", r"tiny-model: .*nodir.* does not exist")
def _(folder, work):
    return ["tiny-model", str(folder / "nodir" / "t.model")]


@case("tiny_model.exists", r"t\.model exists; pass --overwrite", keep=("t.model",))
def _(folder, work):
    (folder / "t.model").write_text("mine")
    return ["tiny-model", str(folder / "t.model")]


@case("tiny_model.is_directory", r"t\.model is a directory", keep=("t.model",))
def _(folder, work):
    (folder / "t.model").mkdir()
    return ["tiny-model", str(folder / "t.model"), "--overwrite"]


@case("tiny_model.read_only", r"ro.* not writable", keep=("ro",))
def _(folder, work):
    make_read_only(folder / "ro")
    return ["tiny-model", str(folder / "ro" / "t.model")]


# ---------------------------------------------------------------- Calculator and the Python API
def api_case(id, expect):
    """A Python call that must raise a ValueError (sparseft's error classes) matching ``expect``."""

    def register(fn):
        CASES.append(Case(f"api.{id}", lambda folder, work: lambda: fn(folder, work), expect))
        return fn

    return register


def _energy(work, atoms, **kwargs):
    import sparseft as sf

    atoms.calc = sf.Calculator(work.model, **kwargs)
    return atoms.get_potential_energy()


def _cell(work):
    return work.frames[0].copy()


@api_case("calculator_positions_nan", r"positions .*NaN or inf")
def _(folder, work):
    a = _cell(work)
    a.positions[0, 0] = np.nan
    return _energy(work, a)


@api_case("calculator_positions_inf", r"positions .*NaN or inf")
def _(folder, work):
    a = _cell(work)
    a.positions[2, 1] = -np.inf
    return _energy(work, a)


@api_case("calculator_cell_nan", r"cell .*NaN or inf")
def _(folder, work):
    a = _cell(work)
    a.cell[0, 0] = np.nan
    return _energy(work, a)


@api_case("calculator_coincident", r"atoms 0 and 1 are 0\.000 Å apart")
def _(folder, work):
    a = _cell(work)
    a.positions[1] = a.positions[0]
    return _energy(work, a)


@api_case("calculator_coincident_image", r"atoms 0 and 1 are 0\.000 Å apart")
def _(folder, work):
    a = _cell(work)
    a.positions[1] = a.positions[0] + a.cell[1]
    return _energy(work, a)


@api_case("calculator_molecule_coincident", r"atoms 0 and 2 are 0\.010 Å apart")
def _(folder, work):
    import ase

    a = ase.Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0.01, 0, 0]])
    return _energy(work, a)


@api_case("calculator_unknown_element", r"element O .*the model's elements are Cu Au")
def _(folder, work):
    a = _cell(work)
    a[0].symbol = "O"
    return _energy(work, a)


@api_case("calculator_empty_atoms", r"no atoms")
def _(folder, work):
    import ase

    return _energy(work, ase.Atoms())


@api_case("calculator_bad_head", r"head 'dft' not found")
def _(folder, work):
    return _energy(work, _cell(work), head="dft")


@api_case("calculator_bad_magmom_head", r"magmom_head 'spin' not found")
def _(folder, work):
    return _energy(work, _cell(work), magmom_head="spin")


@api_case("calculator_bad_dtype", r"dtype must be float32 or float64")
def _(folder, work):
    return _energy(work, _cell(work), dtype="half")


@api_case("calculator_missing_model", r"nope\.model: no such file")
def _(folder, work):
    return _energy(type(work)(**{**work.__dict__, "model": folder / "nope.model"}), _cell(work))


@api_case("calculator_bad_adapter", r"nothere: not an adapter directory")
def _(folder, work):
    return _energy(work, _cell(work), adapter=folder / "nothere")


@api_case("predict_nan_positions", r"structure 1: positions .*NaN or inf")
def _(folder, work):
    import sparseft as sf

    a, b = _cell(work), _cell(work)
    b.positions[0, 0] = np.nan
    return sf.predict(sf.load_model(work.model), [a, b])


@api_case("predict_unknown_element", r"element O \(atom 1\) is not in the model")
def _(folder, work):
    import sparseft as sf

    a = _cell(work)
    a[1].symbol = "O"
    return sf.predict(sf.load_model(work.model), [a])


@api_case("load_model_dict", r"holds a dict")
def _(folder, work):
    import sparseft as sf
    from sparseft._compat import torch

    torch.save({"x": 1}, folder / "d.model")
    return sf.load_model(folder / "d.model")


@api_case("load_adapter_nan_values", r"values.*(NaN|non-finite)")
def _(folder, work):
    from safetensors.torch import load_file, save_file

    import sparseft as sf
    from sparseft.io import sha256_file

    target = folder / "adapter"
    shutil.copytree(work.adapter, target)
    tensors = load_file(str(target / "adapter.safetensors"))
    key = _values(tensors)
    tensors[key][1] = float("nan")
    save_file(tensors, str(target / "adapter.safetensors"))
    meta = json.loads((target / "sparseft.json").read_text())
    meta["tensors_sha256"] = sha256_file(target / "adapter.safetensors")
    (target / "sparseft.json").write_text(json.dumps(meta))
    return sf.load_adapter(sf.load_model(work.model), target, check_reference=False)


@api_case("selector_bad_layers", r"select\.layers")
def _(folder, work):
    import sparseft as sf

    return sf.Selector.from_dict({"layers": ["a"]})


@api_case("wrap_matches_nothing", r"adapters\[1\].*matches no block")
def _(folder, work):
    import sparseft as sf

    model = sf.load_model(work.model)
    return sf.wrap(
        model, [sf.SparseConfig(select=sf.Selector(kinds=["skip"])), sf.LoRAConfig(select=sf.Selector(layers=[5]))]
    )


# ---------------------------------------------------------------- issue 21: label routing, CLI flags
def _head_recipe(folder, work, frames, heads, **data):
    ase.io.write(folder / "data.xyz", frames, format="extxyz")
    recipe = set_path(work.recipe(folder / "out"), "data.train", str(folder / "data.xyz"))
    recipe["data"].update(data)
    recipe["heads"] = heads
    return finetune(folder, recipe)


def _dft_frames(work):
    """The corpus frames with a second level of theory under DFT_energy / DFT_forces."""
    frames = [a.copy() for a in work.frames]
    for a in frames:
        a.info["DFT_energy"] = 1.01 * a.info["REF_energy"]
        a.arrays["DFT_forces"] = 1.01 * a.arrays["REF_forces"]
    return frames


@case(
    "heads.shared_stress_key",
    r"data\.train: .*data\.xyz: frame 0: REF_stress would train both the foundation head \(data\.stress_key\) "
    r"and head dft \(heads\[0\]\.stress_key\)",
)
def _(folder, work):
    # the head names its own energy and forces but leaves stress_key at its default: the
    # foundation's REF_stress would train both heads
    heads = [{"name": "dft", "kind": "energy", "energy_key": "DFT_energy", "forces_key": "DFT_forces"}]
    return _head_recipe(folder, work, _dft_frames(work), heads)


@case(
    "heads.calculator_stress_reaches_foundation",
    r"data\.train: .*frame 0: REF_stress \(not in the file: from the ASE calculator or virials\) "
    r"would train both the foundation head \(data\.stress_key\) and head dft",
)
def _(folder, work):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for a in work.frames:  # the DFT labels sit in the calculator, the foundation's in REF_energy/REF_forces
        b = a.copy()
        b.info = {k: v for k, v in a.info.items() if k != "REF_stress"}
        b.arrays["REF_forces"] = a.arrays["REF_forces"].copy()
        b.calc = SinglePointCalculator(
            b, energy=1.01 * a.info["REF_energy"], forces=1.01 * a.arrays["REF_forces"], stress=np.ones(6) * 1e-3
        )
        frames.append(b)
    heads = [{"name": "dft", "kind": "energy", "energy_key": "DFT_energy", "forces_key": "DFT_forces"}]
    return _head_recipe(folder, work, frames, heads, calculator_labels="dft")


@case("heads.two_moment_heads_one_key", r"frame 0: REF_magmoms would train both head a \(heads\[0\]\.magmom_key\)")
def _(folder, work):
    frames = [a.copy() for a in work.frames]
    for a in frames:
        a.arrays["REF_magmoms"] = np.zeros(len(a))
    return _head_recipe(folder, work, frames, [{"name": "a", "kind": "magmom"}, {"name": "b", "kind": "magmom"}])


@case("set.file_error_blames_the_file", r"^\S*recipe\.yaml: train\.epochs")
def _(folder, work):
    return finetune(folder, set_path(work.recipe(folder / "out"), "train.epochs", -1), "--set", "train.lr=0.1")


@case("set.later_set_blamed", r"^--set 'train\.epochs=0': train\.epochs")
def _(folder, work):
    return finetune(folder, work.recipe(folder / "out"), "--set", "train.lr=0.1", "--set", "train.epochs=0")


@case("finetune.dtype_flag", r"^--dtype 'float16': base\.dtype: 'float16' is not one of float32, float64")
def _(folder, work):
    return finetune(folder, work.recipe(folder / "out"), "--dtype", "float16")


@case("finetune.device_flag", r"^--device 'tpu': base\.device: 'tpu' is not one of auto, cpu, cuda")
def _(folder, work):
    return finetune(folder, work.recipe(folder / "out"), "--device", "tpu")


@case(
    "recipe.unknown_method_lists_full",
    r"adapters\[0\]\.method: unknown method 'dora'; valid: freeze, full, lora, rosa, sparse",
)
def _(folder, work):
    return finetune(folder, set_path(work.recipe(folder / "out"), "adapters.0.method", "dora"))


@case(
    "recipe.no_method_lists_full",
    r"adapters\[0\]: an adapter needs a 'method' \(one of freeze, full, lora, rosa, sparse\)",
)
def _(folder, work):
    return finetune(folder, set_path(work.recipe(folder / "out"), "adapters.0", {"l1": 0.1}))


@case("convert.bad_mace_value", r"^convert-mace-args: argument --max_num_epochs: invalid int value: 'abc'")
def _(folder, work):
    return ["convert-mace-args", "--", "--max_num_epochs", "abc"]


# ---------------------------------------------------------------- issue 21, item 6: check --structures and the API
structures_case("cell_huge", r"s\.xyz: frame 1: .*neighbour search .*cells", lambda f: _edit(f, 1, _vacuum))
structures_case("cell_crushed", r"s\.xyz: frame 0: about \d+ neighbours per atom", lambda f: _edit(f, 0, _crushed))


@api_case("predict_cell_huge", r"structure 1: .*neighbour search .*cells")
def _(folder, work):
    import sparseft as sf

    a, b = _cell(work), _cell(work)
    _vacuum(b)
    return sf.predict(sf.load_model(work.model), [a, b])


@api_case("calculator_cell_crushed", r"about \d+ neighbours per atom")
def _(folder, work):
    a = _cell(work)
    _crushed(a)
    return _energy(work, a)
