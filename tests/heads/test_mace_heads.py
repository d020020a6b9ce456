"""Energy heads in MACE's own tools: the native multi-head file in MACECalculator(head=...),
mace_eval_configs --head and mace_create_lammps_model --head, one plain model per head from
`sparseft export`, and the sparseft heads file refused loudly by those tools."""

from __future__ import annotations

import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from sparseft import SparseConfig, wrap
from sparseft._compat import torch
from sparseft.backends.mace.export import to_mace_multihead
from sparseft.export import ExportError, export, write_head_models
from sparseft.heads import HeadedModel, build_head
from sparseft.heads_file import NotAMaceModelError
from sparseft.predict import predict
from sparseft.testing.tiny import tiny_mace


def _perturb(headed):
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in headed.trainable_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    headed.model.proximal_step(0.0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A fine-tune's head files: an energy head 'dft' and a moment head 'spin' on a sparse trunk."""
    d = tmp_path_factory.mktemp("maceheads")
    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    adapted = HeadedModel(wrap(base, [SparseConfig()]))
    adapted.add_head(build_head("dft", "energy", {}, adapted.base))
    adapted.add_head(build_head("spin", "magmom", {}, adapted.base, seed=1))
    _perturb(adapted)
    write_head_models(adapted.merge(), d, log=lambda _m: None)
    return d, adapted


def _structures():
    out = []
    for i in range(2):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 1, 1))
        atoms[3 + i].symbol = "Au"
        atoms.rattle(0.05, seed=2 + i)
        out.append(atoms)
    return out


def _expected(adapted, head):
    """(energy, forces, stress) per structure of sparseft's own head (None: the foundation's)."""
    rows = []
    for p in predict(adapted, _structures()):
        h = p if head is None else p.heads[head]
        rows.append((h.energy, h.forces, h.stress) if head is None else (h["energy"], h["forces"], h["stress"]))
    return rows


def _assert_matches(atoms_list, expected, *, stress=True):
    for atoms, (e, f, s) in zip(atoms_list, expected):
        assert atoms.get_potential_energy() == pytest.approx(e, rel=1e-10, abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), f, atol=1e-9)
        if stress:
            np.testing.assert_allclose(atoms.get_stress(voigt=False), s, atol=1e-9)


@pytest.fixture
def keep_default_dtype():
    previous = torch.get_default_dtype()  # mace's CLIs set it for the process
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("head", ["Default", "dft"])
def test_mace_calculator_runs_each_head_of_the_native_file(files, head):
    from mace.calculators import MACECalculator

    d, adapted = files
    calc = MACECalculator(
        model_paths=str(d / "merged_multihead.model"), head=head, device="cpu", default_dtype="float64"
    )
    assert calc.available_heads == ["Default", "dft"]
    atoms_list = _structures()
    for atoms in atoms_list:
        atoms.calc = calc
    _assert_matches(atoms_list, _expected(adapted, None if head == "Default" else head))


def test_new_head_differs_from_the_foundation(files):
    _, adapted = files
    assert abs(_expected(adapted, "dft")[0][0] - _expected(adapted, None)[0][0]) > 1e-4


def test_mace_eval_configs_head(files, tmp_path, monkeypatch, keep_default_dtype):
    from mace.cli import eval_configs

    d, adapted = files
    ase.io.write(tmp_path / "in.xyz", _structures())
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "mace_eval_configs",
            "--configs",
            str(tmp_path / "in.xyz"),
            "--model",
            str(d / "merged_multihead.model"),
            "--head",
            "dft",
            "--output",
            str(tmp_path / "out.xyz"),
            "--default_dtype",
            "float64",
            "--compute_stress",
        ],
    )
    eval_configs.main()
    frames = ase.io.read(tmp_path / "out.xyz", ":")
    for atoms, (e, f, s) in zip(frames, _expected(adapted, "dft")):
        assert atoms.info["MACE_energy"] == pytest.approx(e, rel=1e-10)
        np.testing.assert_allclose(atoms.arrays["MACE_forces"], f, atol=5e-8)  # extxyz keeps 8 decimals
        np.testing.assert_allclose(np.asarray(atoms.info["MACE_stress"]).reshape(3, 3), s, atol=5e-8)


def _lammps_outputs(compiled, atoms, head_model):
    """Run mace's LAMMPS wrapper on one structure as pair_style mace would (every atom local)."""
    from sparseft.predict import atoms_to_batch

    batch = atoms_to_batch([atoms], head_model)
    local = torch.ones(len(atoms), dtype=torch.float64)
    out = compiled(batch, local, False)
    return float(out["total_energy_local"].detach()[0]), out["forces"].detach().numpy()


@pytest.mark.slow
def test_mace_create_lammps_model_head(files, tmp_path, monkeypatch, keep_default_dtype):
    import shutil

    from mace.cli import create_lammps_model

    d, adapted = files
    path = tmp_path / "multi.model"
    shutil.copy(d / "merged_multihead.model", path)
    monkeypatch.setattr(sys, "argv", ["mace_create_lammps_model", str(path), "--head", "dft", "--dtype", "float64"])
    create_lammps_model.main()
    compiled = torch.jit.load(str(path) + "-lammps.pt")
    native = torch.load(path, weights_only=False)
    atoms = _structures()[0]
    energy, forces = _lammps_outputs(compiled, atoms, native)
    e, f, _ = _expected(adapted, "dft")[0]
    assert energy == pytest.approx(e, rel=1e-10)
    np.testing.assert_allclose(forces, f, atol=1e-9)


@pytest.mark.parametrize("source", ["merged_with_heads.model", "merged_multihead.model"])
def test_export_one_plain_model_per_head(files, tmp_path, source, capsys):
    from mace.calculators import MACECalculator

    from sparseft.cli import main

    d, adapted = files
    for head in ("dft", "Default"):
        out = tmp_path / f"{head}.model"
        assert main(["export", str(d / source), "--head", head, "-o", str(out)]) == 0
        assert f"mace heads ['{head}']" in capsys.readouterr().out
        model = torch.load(out, weights_only=False)
        assert type(model).__name__ == "ScaleShiftMACE" and model.heads == [head]
        atoms_list = _structures()
        for atoms in atoms_list:
            atoms.calc = MACECalculator(model_paths=str(out), device="cpu", default_dtype="float64")
        _assert_matches(atoms_list, _expected(adapted, None if head == "Default" else head))


def test_export_refuses_moment_heads_and_unknown_heads(files, tmp_path, capsys):
    from sparseft.cli import main

    d, adapted = files
    assert main(["export", str(d / "merged_with_heads.model"), "--head", "spin", "-o", str(tmp_path / "x.model")]) == 2
    assert "head 'spin' predicts magmoms: mace has no form for it" in capsys.readouterr().err
    assert main(["export", str(d / "merged_multihead.model"), "--head", "xtb", "-o", str(tmp_path / "x.model")]) == 2
    assert "head 'xtb' not found; the model's heads are ['Default', 'dft']" in capsys.readouterr().err
    assert not (tmp_path / "x.model").exists()
    with pytest.raises(ExportError, match="no energy heads"):
        to_mace_multihead(adapted.model.merge(), {})


def test_mace_calculator_refuses_the_sparseft_heads_file(files):
    from mace.calculators import MACECalculator

    d, _ = files
    for head in (None, "dft"):
        with pytest.raises(
            NotAMaceModelError,
            match=r"sparseft model with heads \[dft \(energy\), spin \(magmom\)\], "
            r"not a mace-torch model.*merged_multihead.model",
        ):
            MACECalculator(model_paths=str(d / "merged_with_heads.model"), device="cpu", head=head)


@pytest.mark.parametrize("head", [None, "dft"])
def test_mace_eval_configs_refuses_the_sparseft_heads_file(files, tmp_path, monkeypatch, keep_default_dtype, head):
    from mace.cli import eval_configs

    d, _ = files
    ase.io.write(tmp_path / "in.xyz", _structures())
    argv = [
        "mace_eval_configs",
        "--configs",
        str(tmp_path / "in.xyz"),
        "--model",
        str(d / "merged_with_heads.model"),
        "--output",
        str(tmp_path / "out.xyz"),
    ] + (["--head", head] if head else [])
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(NotAMaceModelError, match="not a mace-torch model"):
        eval_configs.main()
    assert not (tmp_path / "out.xyz").exists()


def test_sparseft_still_loads_the_heads_file(files):
    from sparseft import Calculator

    d, adapted = files
    atoms = _structures()[0]
    atoms.calc = Calculator(d / "merged_with_heads.model", head="dft")
    e, f, _ = _expected(adapted, "dft")[0]
    assert atoms.get_potential_energy() == pytest.approx(e, rel=1e-12)
    assert atoms.get_magnetic_moments().shape == (len(atoms),)
    atoms.calc = Calculator(d / "merged_multihead.model", head="dft")  # sparseft runs the native file too
    assert atoms.get_potential_energy() == pytest.approx(e, rel=1e-10)


def test_export_without_head_gives_the_native_file(files):
    d, adapted = files
    from sparseft.loading import load_model

    native = export(load_model(d / "merged_with_heads.model"), None)
    assert native.heads == ["Default", "dft"]


def test_float32_trunk(tmp_path):
    from mace.calculators import MACECalculator

    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5, dtype=torch.float32)
    adapted = HeadedModel(wrap(base, [SparseConfig()]))
    adapted.add_head(build_head("dft", "energy", {}, adapted.base))
    _perturb(adapted)
    native = to_mace_multihead(adapted.model.merge(), dict(adapted.output_heads))
    assert next(native.parameters()).dtype == torch.float32
    atoms = _structures()[0]
    atoms.calc = MACECalculator(models=native, head="dft", device="cpu", default_dtype="float32")
    expected = predict(adapted, [atoms])[0].heads["dft"]
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], rel=1e-5)
