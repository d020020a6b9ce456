"""What the bad-input corpus cannot show alone: --debug tracebacks, the trust warning once per
file, resume with a changed recipe (refused, or accepted and recorded), NaN in equivariance
reports, the declared ranges."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings

import ase.io
import numpy as np
import pytest
import yaml

import sparseft as sf
from sparseft._compat import torch
from sparseft.cli import main
from sparseft.recipe import TrainSection, recipe_differences
from sparseft.testing.broken import BrokenModel
from sparseft.testing.equivariance import check_equivariance
from sparseft.testing.structures import default_structures
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames, recipe_text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("hardening")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    ase.io.write(d / "data.xyz", emt_frames(8))
    (d / "run.yaml").write_text(recipe_text("tiny.model", "data.xyz", "run", epochs=1))
    assert main(["finetune", str(d / "run.yaml"), "--quiet"]) == 0
    return d


def test_debug_prints_the_traceback_and_still_ends_with_one_error_line(workdir, capsys):
    (workdir / "bad.yaml").write_text("train: {lr: -1}\ndata: {train: data.xyz}\nadapters: [{method: sparse}]\n")
    assert main(["finetune", str(workdir / "bad.yaml")]) == 2
    plain = capsys.readouterr().err
    assert "Traceback" not in plain and plain.strip() == "sparseft: error: " + plain.strip()[len("sparseft: error: ") :]
    assert main(["finetune", str(workdir / "bad.yaml"), "--debug"]) == 2
    debug = capsys.readouterr().err
    assert "Traceback (most recent call last)" in debug and "RecipeError" in debug
    assert debug.strip().splitlines()[-1] == plain.strip()
    assert main(["--debug", "inspect", str(workdir / "nope.model")]) == 2  # before the command too
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_exception_is_an_internal_error_with_exit_1(workdir, monkeypatch, capsys):
    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr("sparseft.cli.cmd_inspect", boom)
    assert main(["inspect", str(workdir / "tiny.model")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "sparseft: error: internal error: KeyError: 'surprise' (rerun with --debug for the traceback)"


def test_loading_a_model_file_warns_once_per_file(tmp_path):
    for name in ("a.model", "b.model"):
        torch.save(tiny_mace(), tmp_path / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sf.load_model(tmp_path / "a.model")
        sf.load_model(tmp_path / "a.model")
        sf.Calculator(str(tmp_path / "a.model"))
        sf.load_model(tmp_path / "b.model")
        sf.Calculator("embedded")  # safetensors: no warning
    trust = [w for w in caught if issubclass(w.category, sf.UntrustedModelWarning)]
    assert [str(w.message).split(":")[0] for w in trust] == [str(tmp_path / "a.model"), str(tmp_path / "b.model")]
    assert "runs code from the file" in str(trust[0].message)


def test_the_trust_warning_can_be_silenced_for_trusted_files(tmp_path):
    torch.save(tiny_mace(), tmp_path / "c.model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=sf.UntrustedModelWarning)  # as the README says
        sf.load_model(tmp_path / "c.model")
    assert not [w for w in caught if issubclass(w.category, sf.UntrustedModelWarning)]


def test_the_cli_prints_the_note_not_a_python_warning(workdir, capsys):
    torch.save(tiny_mace(), workdir / "d.model")
    assert main(["inspect", str(workdir / "d.model")]) == 0
    err = capsys.readouterr().err
    assert (
        err.startswith("note: a model file (mace .model, sevenn .pth) is a pickled Python object")
        and "Warning" not in err
    )


def _resume_copy(workdir, name, **train):
    shutil.rmtree(workdir / name, ignore_errors=True)
    shutil.copytree(workdir / "run", workdir / name)
    (workdir / f"{name}.yaml").write_text(recipe_text("tiny.model", "data.xyz", name, epochs=1, **train))
    return workdir / f"{name}.yaml"


def test_resume_with_a_changed_recipe_is_refused_with_the_differences(workdir, capsys):
    recipe = _resume_copy(workdir, "changed")
    before = sorted(p.name for p in (workdir / "changed").rglob("*"))
    assert (
        main(["finetune", str(recipe), "--resume", "--quiet", "--set", "train.lr=0.5", "--set", "train.epochs=3"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        "--resume: the recipe differs from" in err and "train.lr: 0.01 -> 0.5" in err and "train.epochs: 1 -> 3" in err
    )
    assert "--accept-recipe-changes" in err
    assert sorted(p.name for p in (workdir / "changed").rglob("*")) == before
    assert main(["finetune", str(recipe), "--resume", "--quiet"]) == 0  # the same recipe resumes


def test_an_accepted_recipe_change_is_recorded(workdir):
    recipe = _resume_copy(workdir, "accepted")
    assert (
        main(["finetune", str(recipe), "--resume", "--quiet", "--set", "train.epochs=2", "--accept-recipe-changes"])
        == 0
    )
    records = json.loads((workdir / "accepted" / "recipe_changes.json").read_text())
    assert records == [{"resumed_after_epoch": 1, "step": records[0]["step"], "changes": ["train.epochs: 1 -> 2"]}]
    assert yaml.safe_load((workdir / "accepted" / "recipe.yaml").read_text())["train"]["epochs"] == 2
    assert json.loads((workdir / "accepted" / "metrics.json").read_text())["epochs"] == 2


def test_accept_recipe_changes_needs_resume(workdir, capsys):
    assert main(["finetune", str(workdir / "run.yaml"), "--accept-recipe-changes"]) == 2
    assert "only applies with --resume" in capsys.readouterr().err


def test_recipe_differences_ignore_the_output_directory():
    a = {"train": {"lr": 0.1}, "output": {"directory": "/a"}, "adapters": [{"l1": 1}]}
    b = {"train": {"lr": 0.1}, "output": {"directory": "/b"}, "adapters": [{"l1": 2}]}
    assert recipe_differences(a, b) == ["adapters[0].l1: 1 -> 2"]
    assert recipe_differences(a, {**a, "adapters": []}) == ["adapters: [{'l1': 1}] -> []"]


def test_every_numeric_recipe_key_declares_a_range():
    """One place per fact: the range of each number lives on its field (checked when read), in
    every recipe section, every adapter method's config and the head config."""
    from sparseft.adapters import METHODS
    from sparseft.heads import HeadConfig
    from sparseft.recipe import BaseSection, DataSection, OutputSection

    numeric = {int, float, "int", "float", "typing.Optional[int]", "typing.Optional[float]"}
    numeric |= {"int | None", "float | None", "Optional[int]", "Optional[float]"}
    sections = [BaseSection, DataSection, TrainSection, OutputSection, HeadConfig, *METHODS.values()]
    missing, seen = [], 0
    for section in sections:
        for f in dataclasses.fields(section):
            if f.type in numeric and f.name != "seed":
                seen += 1
                if "range" not in f.metadata:
                    missing.append(f"{section.__name__}.{f.name}")
    assert seen > 20, "the check must see the numeric keys of every section"
    assert not missing, f"numeric keys without a declared range: {missing}"


class NaNOnFirstStructure(BrokenModel):
    """Outputs NaN forces for the first structure of each batch that holds it (a model that
    breaks on some inputs only)."""

    calls = 0

    def perturb(self, data, out):
        NaNOnFirstStructure.calls += 1
        if NaNOnFirstStructure.calls == 1:
            out["forces"] = out["forces"] * float("nan")


def test_a_nan_error_anywhere_fails_the_check_even_when_later_errors_are_finite(make_model):
    model = NaNOnFirstStructure(make_model("l1", "float64"))
    structures = default_structures(model)
    report = check_equivariance(model, structures)
    assert not report.passed
    assert any(np.isnan(row.max_error) for row in report.rows)
    assert check_equivariance(make_model("l1", "float64"), structures).passed


def test_calculator_refuses_bad_structures_before_the_model_runs(make_model):
    atoms = ase.Atoms("HO", positions=[[0, 0, 0], [0, 0, 0.05]])
    atoms.calc = sf.Calculator(make_model("l1", "float64"))
    with pytest.raises(ValueError, match=r"atoms 0 and 1 are 0\.050 Å apart"):
        atoms.get_potential_energy()
    atoms.positions[1] = [0, 0, 1.0]
    assert np.isfinite(atoms.get_potential_energy())


def test_overwrite_and_resume_delete_what_killed_writes_left(workdir):
    for flag in ("--overwrite", "--resume"):
        recipe = _resume_copy(workdir, "litter")
        out = workdir / "litter"
        (out / ".merged.model.tmp").write_bytes(b"half")
        (out / ".adapter.tmp-abc").mkdir()
        (out / "checkpoint" / ".tmp-xyz").mkdir()
        (out / "mine.txt").write_text("user data")
        assert main(["finetune", str(recipe), flag, "--quiet"]) == 0
        assert not [p for p in out.rglob(".*") if p.name != ".gitkeep"], sorted(out.rglob(".*"))
        assert (out / "mine.txt").read_text() == "user data"
        assert sorted(p.name for p in (out / "checkpoint").iterdir())[0] == "LATEST"
