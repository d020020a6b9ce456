"""The command line: inspect, check, tiny-model; errors are one line and exit 2."""

from __future__ import annotations

import pytest

from sparseft._compat import torch
from sparseft.cli import main
from sparseft.heads import HeadedModel, feature_irreps
from sparseft.testing.broken import ConstantForce, PolarVectorMagmomHead


@pytest.fixture
def model_file(make_model, tmp_path):
    path = tmp_path / "tiny.model"
    torch.save(make_model("l1", "float64"), path)
    return path


def test_inspect_prints_the_catalogue(model_file, capsys):
    assert main(["inspect", str(model_file), "--details"]) == 0
    out = capsys.readouterr().out
    assert "interactions.0.skip_tp.weight[1ox0e->1o Z=8]" in out
    assert "share" in out and "not adaptable" in out


def test_inspect_groups_by_kind_by_default(model_file, capsys):
    assert main(["inspect", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "skip_tp.weight[" not in out and "contraction" in out and "--details" in out
    assert len(out.splitlines()) < 25


def test_inspect_resolves_a_selector(model_file, capsys):
    assert main(["inspect", str(model_file), "--select", "kinds=skip layers=0 elements=O"]) == 0
    out = capsys.readouterr().out
    assert "resolves to 3 blocks, 192 weights" in out
    assert "Z=1" not in out


def test_inspect_groups(model_file, capsys):
    assert main(["inspect", str(model_file), "--group", "kind"]) == 0
    out = capsys.readouterr().out
    assert "contraction" in out and "skip_tp.weight[" not in out


def test_bad_selector_is_a_clear_error(model_file, capsys):
    assert main(["inspect", str(model_file), "--select", "kinds=nope"]) == 2
    assert "unknown kind" in capsys.readouterr().err


def test_missing_model_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "x.model")]) == 2
    assert "x.model: no such file" in capsys.readouterr().err


def test_check_passes_a_real_model_and_fails_a_broken_one(model_file, make_model, tmp_path, capsys):
    assert main(["check", str(model_file)]) == 0
    assert "PASS" in capsys.readouterr().out
    broken = tmp_path / "broken.model"
    torch.save(ConstantForce(make_model("l1", "float64")), broken)
    # a broken wrapper is not a MACE model: load_model refuses it before any check
    assert main(["check", str(broken)]) == 2
    # a MACE model with a head of the wrong parity loads, and the check itself fails it
    base = make_model("l1", "float64")
    wrong = PolarVectorMagmomHead("wrong", {}, irreps_list=feature_irreps(base), num_elements=2).double()
    torch.save(HeadedModel(base, [wrong]), tmp_path / "wrong_head.model")
    capsys.readouterr()
    assert main(["check", str(tmp_path / "wrong_head.model")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "wrong" in out


def test_check_with_an_adapter(model_file, tmp_path, capsys):
    import sparseft as sf

    base = sf.load_model(model_file)
    adapted = sf.wrap(base, [sf.LoRAConfig(rank=2)])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.1)
    sf.save_adapter(adapted, tmp_path / "ad")
    assert main(["check", str(model_file), "--adapter", str(tmp_path / "ad")]) == 0
    assert "adapter" in capsys.readouterr().out


def test_tiny_model_like_mp0_medium(tmp_path, capsys):
    from sparseft.blocks import blocks

    target = tmp_path / "mp0.model"
    assert main(["tiny-model", str(target), "--like", "mp0-medium", "--dtype", "float32"]) == 0
    model = torch.load(target, weights_only=False)
    assert sum(p.numel() for p in model.parameters()) == 4_688_656  # MACE-MP-0 medium's weight count
    assert len(model.atomic_numbers) == 89 and len(blocks(model)) == 1111
    assert "4688656 weights" in capsys.readouterr().out


def test_tiny_model_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "t.model"
    assert main(["tiny-model", str(target)]) == 0
    assert main(["tiny-model", str(target)]) == 2
    assert "exists" in capsys.readouterr().err


def test_help_shows_user_words_not_internal_names():
    """Every argument has a help text and a metavar that says what it takes (not its
    internal name); the description is for users, not the module's docstring."""
    import argparse

    from sparseft.cli import build_parser

    parser = build_parser()
    assert "``" not in parser.description and "Thin" not in parser.description
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest}: no help text"
            takes_value = action.option_strings and action.nargs != 0 and not action.choices
            assert not takes_value or action.metavar, f"{name} {action.option_strings}: shows {action.dest.upper()}"


def test_finetune_device_and_dtype_flags_set_the_recipe(tmp_path, monkeypatch):
    import sparseft.run

    seen = {}
    monkeypatch.setattr(sparseft.run, "run", lambda recipe, **kw: seen.setdefault("recipe", recipe))
    (tmp_path / "r.yaml").write_text("data: {train: x.xyz}\nadapters: [{method: sparse}]\n")
    assert main(["finetune", str(tmp_path / "r.yaml"), "--device", "cpu", "--dtype", "float32"]) == 0
    assert (seen["recipe"].base.device, seen["recipe"].base.dtype) == ("cpu", "float32")
    seen.clear()  # the flags win over --set and the file
    args = ["--set", "base.dtype=float64", "--dtype", "float32"]
    assert main(["finetune", str(tmp_path / "r.yaml"), *args]) == 0
    assert seen["recipe"].base.dtype == "float32"


def test_convert_mace_args_prints_no_mace_import_noise(tmp_path):
    """mace's import-time UserWarning and cuequivariance note reach neither stderr nor the recipe on stdout."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    api = "from sparseft.backends.mace.convert import convert; print(convert(['--max_num_epochs', '3'])[0]['train'])"
    for argv in (
        [sys.executable, "-m", "sparseft", "convert-mace-args", "--", "--max_num_epochs", "3"],
        [sys.executable, "-c", api],  # the Python API imports mace itself
    ):
        out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "Warning" not in out.stderr and "cuequivariance" not in out.stderr + out.stdout, out.stderr + out.stdout
        recipe_train = yaml.safe_load(out.stdout) if argv[1] == "-c" else yaml.safe_load(out.stdout)["train"]
        assert recipe_train["epochs"] == 3


def _water_file(tmp_path, n=3):
    import ase.io
    from ase.build import molecule

    frames = []
    for i in range(n):
        atoms = molecule("H2O")
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    ase.io.write(tmp_path / "s.xyz", frames)
    return tmp_path / "s.xyz"


def test_check_structures_shows_a_count_and_progress_and_quiet_keeps_the_report(
    model_file, tmp_path, capsys, monkeypatch
):
    """Progress lines (stderr is no terminal here) and a count; --quiet hides progress, never results."""
    import sparseft.cli

    monkeypatch.setattr(sparseft.cli, "CHECK_PROGRESS_SECONDS", 0.0)  # a line per structure
    path = _water_file(tmp_path)
    assert main(["check", str(model_file), "--structures", str(path)]) == 0
    captured = capsys.readouterr()
    assert "on 3 structures" in captured.out and "PASS" in captured.out
    assert "checking 3 structures" in captured.err
    assert "equivariance check: 3/3 structures" in captured.err, captured.err
    assert main(["check", str(model_file), "--structures", str(path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "on 3 structures" in captured.out and "PASS" in captured.out
    assert "structures" not in captured.err


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    import io

    from sparseft.train_log import Progress

    terminal = io.StringIO()
    with Progress(3, "evaluating test", unit="batches", bar=True, file=terminal) as progress:
        for _ in range(3):
            progress.update()
    assert "evaluating test:" in terminal.getvalue() and "/3 [" in terminal.getvalue()  # a bar with the count
    lines = []
    with Progress(4, "evaluating test", unit="batches", log=lines.append, seconds=0.0, bar=False) as progress:
        for _ in range(4):
            progress.update()
    assert lines[-1].startswith("evaluating test: 4/4 batches"), lines
    quiet = []
    with Progress(4, "x", log=quiet.append, seconds=0.0, bar=False, quiet=True) as progress:
        progress.update(4)
    assert quiet == []
