"""`sparseft convert-sevenn-args`: a sevenn training input.yaml -> an equivalent recipe that loads,
with every key it cannot map named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from sparseft.cli import main
from sparseft.convert_sevenn import convert, convert_config
from sparseft.recipe import load_recipe, recipe_from_dict


def _presets() -> list[Path]:
    """sevenn's shipped preset inputs (``sevenn preset <name>``), found without importing sevenn."""
    spec = importlib.util.find_spec("sevenn")
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(Path(next(iter(spec.submodule_search_locations)), "presets").glob("*.yaml"))


PRESETS = _presets()
needs_presets = pytest.mark.skipif(not PRESETS, reason="sevenn is not installed (its presets are the fixtures)")


def _preset(name: str) -> Path:
    path = next((p for p in PRESETS if p.stem == name), None)
    if path is None:
        pytest.skip(f"sevenn preset {name} not shipped")
    return path


# keys the converter maps into the recipe (everything else must be named in a note)
MAPPED = {
    "train": {
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
        "is_train_stress",
        "train_shuffle",
        "best_metric",
        "device",
    },
    "data": {
        "batch_size",
        "load_trainset_path",
        "load_validset_path",
        "load_testset_path",
        "load_dataset_path",
        "data_divide_ratio",
        "data_format",
        "dtype",
        "data_format_args",
    },
    "model": set(),
}
# switches that need no note when off (sparseft does without them too)
OFF_IS_MAPPED = {
    "use_modal_wise_shift",
    "use_modal_wise_scale",
    "use_weight",
    "use_modality",
    "rehearsal",
    "train_shift_scale",
    "train_denominator",
}


def _unreported(config: dict, notes: list[str]) -> list[str]:
    """Keys of ``config`` neither mapped nor named in a note."""
    text = "\n".join(notes)
    missing = []
    for section in ("model", "train", "data"):
        for key, value in (config.get(section) or {}).items():
            if key in MAPPED[section] or (key in OFF_IS_MAPPED and not value):
                continue
            if key not in text:
                missing.append(f"{section}.{key}")
    return missing


@needs_presets
def test_the_fine_tune_preset_becomes_a_full_fine_tune_recipe_that_loads(tmp_path, capsys):
    """``sevenn preset fine_tune``'s input (SevenNet-0, Huber, Adam 0.004, ExponentialLR 0.99)."""
    fine_tune = _preset("fine_tune")
    text = fine_tune.read_text()
    (tmp_path / "train.extxyz").write_text("")  # the preset names ./valid.extxyz and ./train_*.extxyz
    (tmp_path / "train_1.extxyz").write_text("")
    (tmp_path / "input.yaml").write_text(text)
    out = tmp_path / "recipe" / "recipe.yaml"
    out.parent.mkdir()
    assert main(["convert-sevenn-args", str(tmp_path / "input.yaml"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    recipe = load_recipe(out)
    assert recipe.base.model == "sevennet:7net-0"  # 'SevenNet-0_11July2024'
    assert [type(a).__name__ for a in recipe.adapters] == ["FreezeConfig"]  # method: full (every block)
    assert "method: full" in out.read_text()
    assert recipe.data.train == str(tmp_path / "train_1.extxyz")  # the glob, expanded against input.yaml's folder
    assert recipe.data.valid == str(tmp_path / "valid.extxyz") and recipe.data.valid_fraction == 0.0
    assert recipe.data.test == str(tmp_path / "sevenn_data" / "mydata.pt")
    assert recipe.data.E0s == "foundation"  # train_shift_scale: False: sevenn keeps SevenNet-0's shift
    t = recipe.train
    assert (t.epochs, t.batch_size, t.lr, t.seed, t.optimizer) == (100, 4, 0.004, 1, "adam")
    assert (t.energy_weight, t.forces_weight) == (1.0, 1.0)
    assert t.stress_weight == pytest.approx(0.01 * 1602.1766208**2)  # kbar -> eV/Å³ under a squared error
    assert t.amsgrad is False and t.clip_grad is None  # torch's Adam as sevenn builds it; no clipping
    assert (t.scheduler, t.lr_gamma) == ("exponential", 0.99)  # torch's ExponentialLR once an epoch, as sevenn
    assert base_dtype(out) == "float32"
    for expected in (
        "train.loss=Huber, train.loss_param={'delta': 0.01}: sevenn's Huber acts on stress in kbar",
        "data.load_testset_path: './sevenn_data/mydata.pt' is a sevenn graph",
        "data.data_divide_ratio=0.1: ignored (as by sevenn: load_validset_path is given)",
        "ignored; the architecture comes from the checkpoint",
        "train.error_record, train.per_epoch: sevenn bookkeeping",
    ):
        assert expected in err, (expected, err)
    assert (t.loss, t.huber_delta) == ("huber", 0.01)
    assert "# not mapped: train.loss=Huber" in out.read_text()  # the notes are in the recipe too
    assert not _unreported(yaml.safe_load(text), err.splitlines())


def base_dtype(path: Path) -> str:
    return load_recipe(path).base.dtype


@needs_presets
@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_shipped_preset_converts_and_names_what_it_drops(preset):
    config = yaml.safe_load(preset.read_text())
    recipe, notes = convert(preset)
    assert not _unreported(config, notes), notes
    assert recipe["adapters"] == [{"method": "full"}]
    assert all("\n" not in n for n in notes)  # one line each
    recipe_from_dict(recipe)  # loads (the files need not exist to be a valid recipe)
    yaml.safe_dump(recipe)  # plain YAML types


def test_an_fe_input_maps_its_keys_and_paths(tmp_path):
    """The benchmark's edited preset: no stress, absolute data paths, data_format_args keys, a
    checkpoint file next to the input, scheduler that barely decays, and extra/unknown keys."""
    config = {
        "model": {"chemical_species": "auto", "cutoff": 5.0, "train_shift_scale": True, "mystery": 1},
        "train": {
            "random_seed": 0,
            "is_train_stress": False,
            "epoch": 10,
            "loss": "Huber",
            "loss_param": {"delta": 0.01},
            "optimizer": "adam",
            "optim_param": {"lr": 0.004, "betas": [0.9, 0.99]},
            "scheduler": "exponentiallr",
            "scheduler_param": {"gamma": 0.99},
            "force_loss_weight": 2.0,
            "continue": {"checkpoint": "ckpt/checkpoint_best.pth", "reset_optimizer": False},
            "unknown_train_key": True,
        },
        "data": {
            "batch_size": 2,
            "data_format_args": {"index": ":", "energy_key": "energy_dft", "force_key": "force"},
            "load_trainset_path": ["/abs/train.extxyz"],
            "load_validset_path": "valid.extxyz",
            "rehearsal": True,
            "load_memory_path": ["memory.extxyz"],
            "mem_batch_size": 8,
            "unknown_data_key": 3,
        },
        "extra_section": {},
    }
    recipe, notes = convert_config(config, base_dir=tmp_path)
    assert recipe["base"] == {"model": str(tmp_path / "ckpt/checkpoint_best.pth"), "dtype": "float32"}
    data = recipe["data"]
    assert data["train"] == "/abs/train.extxyz" and data["valid"] == str(tmp_path / "valid.extxyz")
    assert (data["energy_key"], data["forces_key"]) == ("energy_dft", "force")
    assert data["E0s"] == "estimated"  # sevenn trains its shift here; sparseft refits it
    assert data["replay"] == {"source": str(tmp_path / "memory.extxyz"), "labels": "file"}
    train = recipe["train"]
    assert (train["epochs"], train["seed"], train["lr"], train["batch_size"]) == (10, 0, 0.004, 2)
    assert (train["forces_weight"], train["stress_weight"], train["scheduler"]) == (2.0, 0.0, "exponential")
    assert train["lr_gamma"] == 0.99
    assert (train["loss"], train["huber_delta"]) == ("huber", 0.01)  # no stress term: nothing to note
    assert "select_on" not in train  # sevenn's default best_metric, TotalLoss, is sparseft's default
    assert not any("train.loss" in n for n in notes), notes
    text = "\n".join(notes)
    for key in (
        "train.unknown_train_key",
        "data.unknown_data_key",
        "model.mystery",
        "extra_section",
        "train.optim_param.betas",
        "train.continue.reset_optimizer",
        "model.train_shift_scale",
        "data.rehearsal",
    ):
        assert key in text, (key, notes)
    recipe_from_dict(recipe)


def test_shipped_names_and_unsupported_checkpoints():
    for name, expected in (
        ("7net-0", "sevennet:7net-0"),
        ("SevenNet-0_11July2024", "sevennet:7net-0"),
        ("7net-0_22May2024", "sevennet:7net-0-22may2024"),
        ("sevennet-l3i5", "sevennet:7net-l3i5"),
        ("7net-MF-0", "sevennet:7net-mf-0"),
    ):
        recipe, notes = convert_config({"model": {}, "train": {"continue": {"checkpoint": name}}})
        assert recipe["base"]["model"] == expected
    recipe, notes = convert_config({"model": {}, "train": {"continue": {"checkpoint": "7net-mf-ompa"}}})
    assert any("7net-mf-ompa" in n and "not shipped in the sevenn wheel" in n for n in notes)
    recipe, notes = convert_config({"model": {}})  # sevenn from scratch: no checkpoint
    assert recipe["base"]["model"] == "sevennet:7net-0" and any("from scratch" in n for n in notes)
    # sevenn's defaults where a key is left out (force weight 0.1, batch 6, 300 epochs, seed 1)
    train = recipe["train"]
    assert (train["forces_weight"], train["batch_size"], train["epochs"], train["seed"]) == (0.1, 6, 300, 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"no such sevenn input file"),
        (b"\x00\x01\xff\xfe", r"not a text file"),
        ("model: [1, 2\n", r"not YAML \(line"),
        ("", r"empty file"),
        ("- a\n- b\n", r"expected a YAML mapping, got list"),
        ("train:\n  epoch: 3\ndata: {}\n", r"no model section"),
        ("model: {}\ntrain: [1]\n", r"train: expected a mapping"),
    ],
    ids=["missing", "binary", "not-yaml", "empty", "list", "no-model", "bad-train"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    import re

    path = tmp_path / "input.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["convert-sevenn-args", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sparseft: error: "), err
    assert re.search(message, err), err
    assert main(["convert-sevenn-args", str(tmp_path)]) == 2  # a folder
    assert "is a folder" in capsys.readouterr().err


def test_printed_recipe_has_paths_relative_to_the_current_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "input.yaml").write_text(
        "model: {cutoff: 5.0}\ntrain: {continue: {checkpoint: 7net-0}}\ndata: {load_trainset_path: [t.extxyz]}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["convert-sevenn-args", "job/input.yaml"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["train"] == "job/t.extxyz"
    assert printed["data"]["valid_fraction"] == 0.0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": {}, "train": {"epoch": "ten"}}, "train.epoch: expected an integer, got 'ten'"),
        ({"model": {}, "train": {"optim_param": {"lr": "fast"}}}, "train.optim_param.lr: expected a number"),
        ({"model": {}, "data": {"batch_size": 2.5}}, "data.batch_size: expected an integer, got 2.5"),
        ({"model": {}, "train": {"continue": "7net-0"}}, "train.continue: expected a mapping"),
    ],
)
def test_bad_values_name_their_key(tmp_path, capsys, config, message):
    (tmp_path / "input.yaml").write_text(yaml.safe_dump(config))
    assert main(["convert-sevenn-args", str(tmp_path / "input.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_one_data_modality_becomes_the_base_modality(tmp_path):
    """sevenn's multi-fidelity fine-tune input: data per modality. One modality: sparseft trains
    it (base.modality); two: the recipe says so and leaves the choice to the user."""
    entry = {"data_modality": "PBE", "data_weight": {"energy": 1.0}, "file_list": [{"file": "pbe.extxyz"}]}
    config = {
        "model": {},
        "train": {"continue": {"checkpoint": "7net-mf-0"}},
        "data": {"load_trainset_path": [entry], "load_validset_path": [{**entry, "file_list": [{"file": "v.xyz"}]}]},
    }
    recipe, notes = convert_config(config, base_dir=tmp_path)
    assert recipe["base"]["modality"] == "PBE" and recipe["base"]["model"] == "sevennet:7net-mf-0"
    assert recipe["data"]["train"] == str(tmp_path / "pbe.extxyz")
    assert any("data_weight of data_modality='PBE'" in n for n in notes), notes
    recipe_from_dict(recipe)
    scan = {"data_modality": "R2SCAN", "file_list": [{"file": "scan.extxyz"}]}
    config["data"]["load_trainset_path"] = [entry, scan]
    recipe, notes = convert_config(config, base_dir=tmp_path)
    assert "modality" not in recipe["base"]
    assert any("data_modality entries of ['PBE', 'R2SCAN']: sparseft fine-tunes one modality" in n for n in notes)


def test_a_recipe_that_does_not_load_is_still_written_with_what_to_edit(tmp_path, capsys):
    """An input without training data converts to a recipe that needs a file: it is written,
    with the recipe check's message as a note (in the file and on stderr)."""
    (tmp_path / "input.yaml").write_text(yaml.safe_dump({"model": {}, "train": {}, "data": {}}))
    out = tmp_path / "recipe.yaml"
    assert main(["convert-sevenn-args", str(tmp_path / "input.yaml"), "-o", str(out)]) == 0
    assert "# not mapped: the recipe needs editing: data.train" in out.read_text()
    assert "not mapped: the recipe needs editing: data.train" in capsys.readouterr().err


@pytest.mark.parametrize(
    "best_metric, select_on", [("Force_MAE", "forces_mae"), ("Energy_RMSE", "energy_per_atom_rmse"), ("Bogus", None)]
)
def test_best_metric_becomes_select_on(tmp_path, best_metric, select_on):
    config = {"model": {}, "train": {"best_metric": best_metric}, "data": {"load_trainset_path": "t.extxyz"}}
    recipe, notes = convert_config(config, base_dir=tmp_path)
    assert recipe["train"].get("select_on") == select_on
    assert any("best_metric" in n for n in notes) == (select_on is None), notes
    recipe_from_dict(recipe)
