"""SevenNet-MF-0 (multi-fidelity, shipped in the sevenn wheel) at one modality: loads only with
one named, predicts as sevenn's calculator at that modality, fine-tunes with the E0s of that
modality alone, and its merged checkpoint runs in sevenn's calculator."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

import sparseft as sf
from sparseft.core.facts import e0s_buffer
from sparseft.io import AdapterFileError, load_adapter
from sparseft.loading import ModelLoadError
from sparseft.predict import predict
from sparseft.recipe import RecipeError, recipe_from_dict
from sparseft.run.base import load_base

from ..finetune_data import emt_frames

NAME = "sevennet:7net-mf-0"


def _calculator(model: str, modal: str):
    from sparseft.backends.sevennet._import import sevenn

    sevenn()
    from sevenn.calculator import SevenNetCalculator

    return SevenNetCalculator(model=model, modal=modal, device="cpu")


@pytest.fixture(scope="module")
def atoms():
    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    cell[1].symbol = "Au"
    cell.rattle(0.05, seed=3)
    return cell


@pytest.mark.parametrize(
    "modality, message",
    [
        (None, r"sevennet:7net-mf-0: a multi-fidelity model: choose its modality \(base.modality\) \(R2SCAN, PBE\)"),
        ("HSE", r"'HSE' is not one of its modalities \(R2SCAN, PBE\)"),
    ],
)
def test_a_modality_must_be_named(modality, message):
    with pytest.raises(ModelLoadError, match=message):
        sf.load_model(NAME, head=modality)


def test_a_single_fidelity_model_has_no_modality():
    with pytest.raises(ModelLoadError, match="modality 'PBE' given, but the model has no modalities"):
        sf.load_model("sevennet:7net-0", head="PBE")
    base = {"model": NAME, "modality": "PBE", "head": "R2SCAN"}
    recipe = recipe_from_dict({"base": base, "data": {"train": "t"}, "adapters": [{"method": "sparse"}]})
    with pytest.raises(RecipeError, match="base.modality: 'PBE' and base.head: 'R2SCAN' name two heads"):
        load_base(recipe, "cpu")


@pytest.mark.parametrize("modality", ["PBE", "R2SCAN"])
def test_predictions_match_sevenn_at_each_modality(atoms, modality):
    model = sf.load_model(NAME, head=modality, dtype="float32")
    ours = predict(model, [atoms])[0]
    reference = atoms.copy()
    reference.calc = _calculator("7net-mf-0", modality)
    assert ours.energy == pytest.approx(reference.get_potential_energy(), abs=1e-4)
    np.testing.assert_allclose(ours.forces, reference.get_forces(), atol=2e-5)


def test_fine_tune_at_one_modality_keeps_the_other_and_deploys_in_sevenn(tmp_path, atoms):
    from sparseft.run import run

    ase.io.write(tmp_path / "train.extxyz", emt_frames(8, stress=False))
    recipe = recipe_from_dict(
        {
            "base": {"model": NAME, "modality": "PBE", "dtype": "float32"},
            "data": {"train": str(tmp_path / "train.extxyz"), "valid_fraction": 0.25, "E0s": "estimated"},
            "adapters": [{"method": "sparse", "l1": 1e-4}],
            "train": {"epochs": 1, "batch_size": 3, "lr": 1e-3},
            "output": {"directory": str(tmp_path / "out")},
        }
    )
    run(recipe, log=lambda *_: None)
    base = sf.load_model(NAME, head="PBE", dtype="float32")
    merged = sf.load_model(str(tmp_path / "out" / "merged.pth"), head="PBE", dtype="float32")
    before, after = e0s_buffer(base), e0s_buffer(merged)
    assert torch.equal(before[0], after[0]), "the R2SCAN shift must stay"
    cu = int((base.atomic_numbers == 29).nonzero())
    assert not torch.allclose(before[1, cu], after[1, cu]), "PBE's E0s are refitted"
    ours = predict(merged, [atoms])[0]
    deployed = atoms.copy()
    deployed.calc = _calculator(str(tmp_path / "out" / "merged.pth"), "PBE")
    assert ours.energy == pytest.approx(deployed.get_potential_energy(), abs=1e-4)
    np.testing.assert_allclose(ours.forces, deployed.get_forces(), atol=2e-5)
    # the adapter knows its modality: the same weights at the other fidelity are another base
    with pytest.raises(AdapterFileError, match="modality: PBE vs R2SCAN"):
        load_adapter(sf.load_model(NAME, head="R2SCAN", dtype="float32"), tmp_path / "out" / "adapter")
    load_adapter(base, tmp_path / "out" / "adapter")
