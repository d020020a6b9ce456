"""The ASE calculator: same numbers as direct model calls; MD runs."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.md.verlet import VelocityVerlet

import sparseft as sf
from sparseft._compat import torch
from sparseft.calculator import Calculator
from sparseft.predict import predict
from sparseft.testing import default_structures


@pytest.fixture
def adapted(make_model):
    base = make_model("l1", "float64")
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["skip", "linear"]))])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.05)
    return base, adapted


def test_results_equal_direct_model_calls(adapted, tmp_path):
    base, model = adapted
    sf.save_adapter(model, tmp_path / "ad")
    torch.save(model.merge(), tmp_path / "merged.model")
    structure = default_structures(base)[1]
    expected = predict(model, [structure])[0]
    for calc in (Calculator(model), Calculator(base, adapter=tmp_path / "ad"), Calculator(tmp_path / "merged.model")):
        atoms = structure.copy()
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - expected.energy) <= 1e-10 * abs(expected.energy)
        assert atoms.get_potential_energy() == atoms.get_total_energy() - atoms.get_kinetic_energy()
        np.testing.assert_allclose(atoms.get_forces(), expected.forces, atol=1e-10)
        np.testing.assert_allclose(atoms.get_stress(voigt=False), expected.stress, atol=1e-10)


def test_adapter_on_an_adapted_model_is_refused(adapted, tmp_path):
    _, model = adapted
    sf.save_adapter(model, tmp_path / "ad")
    with pytest.raises(ValueError, match="needs a base model"):
        Calculator(model, adapter=tmp_path / "ad")


def test_nve_md_conserves_energy(adapted):
    base, model = adapted
    atoms = default_structures(base)[1].copy()
    atoms.calc = Calculator(model)
    dyn = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    start = atoms.get_total_energy()
    dyn.run(20)
    assert abs(atoms.get_total_energy() - start) < 1e-3 * len(atoms)
