"""Data that trains, but maybe not as the user meant: what sparseft says (issue 21, items 3-5).

The errors are in the bad-input corpus (``tests/bad_input_corpus.py``); these are the notes and
warnings, and what stays allowed.
"""

from __future__ import annotations

import warnings

import ase
import ase.io
import pytest

from sparseft._compat import torch
from sparseft.recipe import recipe_from_dict
from sparseft.run import run
from sparseft.run.data import load_splits
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.model"
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), path)
    return path


def _recipe(tmp_path, frames, model="tiny.model", **data):
    ase.io.write(tmp_path / "d.xyz", frames, format="extxyz")
    return recipe_from_dict(
        {
            "base": {"model": str(model)},
            "data": {"train": str(tmp_path / "d.xyz"), "valid_fraction": 0.25, **data},
            "adapters": [{"method": "sparse"}],
            "train": {"epochs": 1, "batch_size": 4},
            "output": {"directory": str(tmp_path / "out")},
        }
    )


def _splits(tmp_path, frames, **data):
    lines = []
    return load_splits(_recipe(tmp_path, frames, **data), [29, 79], log=lines.append), lines


def _run(tmp_path, model, frames, **data) -> list[str]:
    """The lines a one-epoch fine-tune logs."""
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(_recipe(tmp_path, frames, model, **data), log=lines.append)
    return lines


def test_a_default_energy_key_absent_everywhere_trains_forces_alone_and_says_so(tmp_path, model):
    frames = emt_frames(8)
    for atoms in frames:
        del atoms.info["REF_energy"]
    lines = _run(tmp_path, model, frames)
    notes = [line for line in lines if "REF_energy" in line]
    assert len(notes) == 1 and "d.xyz: no frame has an energy" in notes[0] and "forces alone" in notes[0], lines


def test_a_key_missing_in_some_frames_only_is_allowed_silently(tmp_path):
    frames = emt_frames(8)
    for atoms in frames:
        atoms.info["DFT_energy"] = atoms.info.pop("REF_energy")
    del frames[3].info["DFT_energy"]
    splits, lines = _splits(tmp_path, frames, energy_key="DFT_energy")
    assert sum("DFT_energy" in a.info for k in ("train", "valid") for a in splits[k].atoms) == 7
    assert not lines


def test_a_set_key_filled_by_the_calculator_is_allowed(tmp_path):
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = emt_frames(8)
    for atoms in frames:
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.info.pop("REF_energy"))
    splits, lines = _splits(tmp_path, frames, energy_key="DFT_energy")
    assert all("DFT_energy" in a.info for a in splits["train"].atoms) and not lines


@pytest.mark.parametrize("where", ["test", "evaluate"])
def test_an_unlabelled_test_or_evaluate_file_is_a_warning_naming_it(tmp_path, model, where):
    unlabelled = emt_frames(3)
    for atoms in unlabelled:
        atoms.info.clear()
        del atoms.arrays["REF_forces"]
    ase.io.write(tmp_path / "u.xyz", unlabelled, format="extxyz")
    value = {"extra": str(tmp_path / "u.xyz")} if where == "evaluate" else str(tmp_path / "u.xyz")
    lines = _run(tmp_path, model, emt_frames(8), **{where: value})
    name = "data.evaluate.extra" if where == "evaluate" else "data.test"
    said = [line for line in lines if "u.xyz" in line]
    assert len(said) == 1 and said[0].startswith(f"WARNING: {name}: {tmp_path / 'u.xyz'}: no frame carries a label"), (
        lines
    )


def _single_atoms(tag: bool = False) -> list:
    out = []
    for symbol, energy in (("Cu", -0.1), ("Au", -0.2), ("Cu", -0.1)):
        atoms = ase.Atoms(symbol, positions=[[0, 0, 0]])
        atoms.info["REF_energy"] = energy
        if tag:
            atoms.info["config_type"] = "IsolatedAtom"
        out.append(atoms)
    return out


@pytest.mark.parametrize("e0s", [None, "average"])
def test_untagged_single_atom_frames_are_named_with_how_to_mark_them(tmp_path, model, e0s):
    """Issue 21 item 4: single-atom frames without config_type=IsolatedAtom are trained on (and
    enter an E0s fit) as in mace_run_train, but never silently."""
    lines = _run(tmp_path, model, _single_atoms() + emt_frames(8), **({"E0s": e0s} if e0s else {}))
    said = [line for line in lines if "single atom" in line]
    assert len(said) == 1, lines
    assert said[0].startswith(f"WARNING: data.train: {tmp_path / 'd.xyz'}: frames 0, 1, 2 are single atoms"), said
    assert "config_type=IsolatedAtom" in said[0]
    assert ("data.E0s: average" in said[0]) == (e0s == "average"), said


def test_tagged_isolated_atoms_give_no_warning(tmp_path, model):
    lines = _run(tmp_path, model, _single_atoms(tag=True) + emt_frames(8))
    assert not [line for line in lines if "single atom" in line], lines


def test_files_without_any_label_of_a_head_are_not_its_data(tmp_path):
    """Custom foundation keys absent from the new data (moments only) and from its valid file,
    present in the replay file of the same list: allowed (the shipped HCO and ECEMC recipes)."""
    import numpy as np

    new = emt_frames(6)
    for atoms in new:
        atoms.info.clear()
        del atoms.arrays["REF_forces"]
        atoms.arrays["REF_magmoms"] = np.zeros(len(atoms))
    replay = emt_frames(6)
    for atoms in replay:
        atoms.info["energy_xtb"] = atoms.info.pop("REF_energy")
        atoms.arrays["forces_xtb"] = atoms.arrays.pop("REF_forces")
    for name, frames in (("new", new[:4]), ("valid", new[4:]), ("replay", replay)):
        ase.io.write(tmp_path / f"{name}.xyz", frames, format="extxyz")
    recipe = recipe_from_dict(
        {
            "base": {"model": "tiny.model"},
            "data": {
                "train": [str(tmp_path / "new.xyz"), str(tmp_path / "replay.xyz")],
                "valid": str(tmp_path / "valid.xyz"),
                "energy_key": "energy_xtb",
                "forces_key": "forces_xtb",
            },
            "adapters": [{"method": "sparse"}],
            "heads": [{"name": "spin", "kind": "magmom"}],
        }
    )
    lines = []
    splits = load_splits(recipe, [29, 79], log=lines.append)
    assert len(splits["train"].atoms) == 10 and not lines
