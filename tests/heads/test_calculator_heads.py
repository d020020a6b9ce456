"""sparseft.Calculator with heads: head choice, magmoms, equal to direct model calls, from
files (merged_with_heads.model, base + adapter), and a few MD steps."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError

from sparseft import Calculator, SparseConfig, save_adapter, wrap
from sparseft._compat import torch
from sparseft.heads import HeadedModel, build_head
from sparseft.predict import predict
from sparseft.testing.tiny import tiny_mace


@pytest.fixture(scope="module")
def headed(tmp_path_factory):
    d = tmp_path_factory.mktemp("calc")
    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    adapted = HeadedModel(wrap(base, [SparseConfig()]))
    adapted.add_head(build_head("lj", "energy", {}, adapted.base))
    adapted.add_head(build_head("spin", "magmom", {}, adapted.base, seed=1))
    with torch.no_grad():
        generator = torch.Generator().manual_seed(0)
        for p in adapted.trainable_parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    adapted.model.proximal_step(0.0)
    torch.save(base, d / "base.model")
    save_adapter(adapted, d / "adapter")
    torch.save(adapted.merge(), d / "merged_with_heads.model")
    return d, adapted


def _atoms():
    atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat((2, 1, 1))
    atoms[3].symbol = "Au"
    atoms.rattle(0.05, seed=2)
    return atoms


def _sources(headed):
    d, adapted = headed
    return {
        "adapted": dict(model=adapted),
        "merged file": dict(model=d / "merged_with_heads.model"),
        "base + adapter": dict(model=d / "base.model", adapter=d / "adapter"),
    }


@pytest.mark.parametrize("source", ["adapted", "merged file", "base + adapter"])
def test_calculator_heads_equal_direct_calls(headed, source):
    _, adapted = headed
    atoms = _atoms()
    direct = predict(adapted, [atoms])[0]
    for head, expected in ((None, direct), ("lj", direct.heads["lj"])):
        calc = Calculator(head=head, **_sources(headed)[source])
        atoms.calc = calc
        e = expected.energy if head is None else expected["energy"]
        f = expected.forces if head is None else expected["forces"]
        s = expected.stress if head is None else expected["stress"]
        assert atoms.get_potential_energy() == pytest.approx(e, rel=1e-12)
        np.testing.assert_allclose(atoms.get_forces(), f, atol=1e-10)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), s, atol=1e-10)
        np.testing.assert_allclose(atoms.get_magnetic_moments(), direct.heads["spin"]["magmoms"], atol=1e-10)
        assert atoms.get_magnetic_moment() == pytest.approx(direct.heads["spin"]["magmoms"].sum(), abs=1e-10)
    assert abs(direct.heads["lj"]["energy"] - direct.energy) > 1e-6  # the two heads really differ


def test_calculator_float32_from_merged_file(headed):
    d, adapted = headed
    atoms = _atoms()
    atoms.calc = Calculator(d / "merged_with_heads.model", head="lj", dtype="float32")
    expected = predict(adapted, [atoms])[0].heads["lj"]
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], rel=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], atol=1e-4)


def test_md_runs_on_a_new_energy_head(headed):
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    atoms = _atoms()
    atoms.calc = Calculator(headed[0] / "merged_with_heads.model", head="lj")
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    start = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=1 * units.fs).run(5)
    assert abs(atoms.get_total_energy() - start) / len(atoms) < 5e-3
    assert atoms.get_magnetic_moments().shape == (len(atoms),)


def test_calculator_head_errors(headed):
    d, adapted = headed
    with pytest.raises(ValueError, match=r"head 'dft' not found; energy heads: \['\(foundation\)', 'lj'"):
        Calculator(adapted, head="dft")
    with pytest.raises(ValueError, match="magmom_head 'x' not found"):
        Calculator(adapted, magmom_head="x")
    atoms = _atoms()
    atoms.calc = Calculator(adapted.model.merge())  # the trunk alone: no heads
    with pytest.raises(PropertyNotImplementedError, match="no magnetic-moment head"):
        atoms.get_magnetic_moments()


def test_check_cli_covers_the_heads_of_a_merged_file(headed, capsys):
    from sparseft.cli import main

    d, _ = headed
    for args in (
        ["check", str(d / "merged_with_heads.model")],
        ["check", str(d / "base.model"), "--adapter", str(d / "adapter")],
    ):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "inversion        spin.magmoms" in out and "lj.forces" in out
