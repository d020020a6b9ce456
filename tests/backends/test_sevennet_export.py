"""sparseft export on a SevenNet trunk: an energy head as a single-head sevenn checkpoint that
sevenn's own calculator runs with the head's energies and forces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

import sparseft as sf
from sparseft.core.backend import backend_of
from sparseft.export import ExportError, export
from sparseft.heads import HeadedModel, build_head
from sparseft.predict import predict


@pytest.fixture(scope="module")
def headed():
    base = sf.load_model("sevennet:7net-0")
    head = build_head("dft", "energy", {}, base)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 1e-2)
        head.atomic_energies.add_(0.1)
    return HeadedModel(sf.wrap(base, [sf.SparseConfig()]), [head]).merge()


def test_an_energy_head_exports_as_a_sevenn_checkpoint(headed, tmp_path):
    from sparseft.backends.sevennet._import import sevenn

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    expected = predict(headed, [atoms])[0].heads["dft"]
    model = export(headed, "dft")
    backend_of(model).save_merged(model, tmp_path / "dft.pth")
    sevenn()
    from sevenn.calculator import SevenNetCalculator

    atoms.calc = SevenNetCalculator(model=str(tmp_path / "dft.pth"), device="cpu")
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], abs=1e-4)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], atol=1e-5)
    assert abs(expected["energy"] - predict(headed, [atoms])[0].energy) > 1e-3, "the head is not the foundation"


def test_export_needs_a_head_name(headed):
    with pytest.raises(ExportError, match="--head"):
        export(headed, None)
