"""Merged models are plain mace-torch models: MACECalculator runs them, torch.save writes them."""

from __future__ import annotations

import numpy as np

import sparseft as sf
from sparseft._compat import torch
from sparseft.testing.structures import default_structures


def test_merged_model_runs_in_mace_calculator(make_model, tmp_path):
    from mace.calculators import MACECalculator

    base = make_model("l1", "float64")
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["skip"]))])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.1)
    merged = adapted.merge()
    torch.save(merged, tmp_path / "merged.model")
    structure = default_structures(base)[1]
    expected = sf.predict(adapted, [structure])[0]

    for calc in (
        MACECalculator(models=merged, device="cpu", default_dtype="float64"),
        MACECalculator(model_paths=str(tmp_path / "merged.model"), device="cpu", default_dtype="float64"),
    ):
        atoms = structure.copy()
        atoms.calc = calc
        assert abs(atoms.get_potential_energy() - expected.energy) <= 1e-10 * abs(expected.energy)
        assert np.abs(atoms.get_forces() - expected.forces).max() <= 1e-10
    reloaded = sf.load_model(tmp_path / "merged.model")
    assert type(reloaded).__name__ == type(base).__name__
