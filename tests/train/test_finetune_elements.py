"""Fine-tunes that add an element: recipe keys, the new-element-only mode, files, errors."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.elements import extend_elements
from sparseft.recipe import RecipeError, load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

from ..finetune_data import emt_frames, recipe_text


def _with_silver(n: int = 16):
    """EMT Cu/Au frames where every other frame has one Ag (the element the tiny model lacks)."""
    from ase.calculators.emt import EMT

    frames = emt_frames(n, seed=3)
    for i, atoms in enumerate(frames):
        if i % 2 == 0:
            atoms[0].symbol = "Ag"
            atoms.calc = EMT()
            atoms.info["REF_energy"] = atoms.get_potential_energy()
            atoms.arrays["REF_forces"] = atoms.get_forces()
            atoms.info["REF_stress"] = atoms.get_stress(voigt=False)
            atoms.calc = None
    return frames


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft_elements")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    ase.io.write(d / "data.xyz", _with_silver())
    return d


def _recipe(workdir, name, *, base_extra: str = "", adapters: str | None = None, data_extra: str = "", **train):
    text = recipe_text("tiny.model", "data.xyz", name, **{"epochs": 1, **train})
    text = text.replace("base:\n  model: tiny.model\n", f"base:\n  model: tiny.model\n{base_extra}")
    text = text.replace("  E0s: estimated\n", f"  E0s: foundation\n{data_extra}")
    if adapters is not None:
        text = text.replace("adapters:\n  - method: sparse\n    l1: 1.0e-3\n", f"adapters: {adapters}\n")
    path = workdir / f"{name}.yaml"
    path.write_text(text)
    return path


def test_new_element_only_leaves_other_structures_bit_identical(workdir):
    metrics = run(
        load_recipe(_recipe(workdir, "only_ag", base_extra="  add_elements: [Ag]\n", adapters="[]")), quiet=True
    )
    assert metrics["added_elements"] == ["Ag"]
    out = workdir / "only_ag"
    merged = sf.load_model(out / "merged.model")
    base = sf.load_model(workdir / "tiny.model")
    assert merged.atomic_numbers.tolist() == [29, 47, 79]
    frames = ase.io.read(workdir / "data.xyz", ":")
    no_silver = [a for a in frames if 47 not in a.numbers]
    torch.set_num_threads(1)
    for a, b in zip(sf.predict(base, no_silver), sf.predict(merged, no_silver)):
        assert a.energy == b.energy and np.abs(a.forces - b.forces).max() <= 1e-14  # see tests/test_elements.py::_same
    silver = [a for a in frames if 47 in a.numbers][:1]
    assert sf.predict(merged, silver)[0].energy != sf.predict(extend_elements(base, ["Ag"]), silver)[0].energy
    rows = json.loads((out / "sparsity.json").read_text())
    assert rows and {r["element"] for r in rows} == {"Ag"} and sum(r["changed"] for r in rows) > 0
    assert metrics["density_summary"]["by_element"]["Ag"] > 0
    loaded = sf.load_adapter(base, out / "adapter")
    a, b = sf.predict(loaded, silver)[0], sf.predict(merged, silver)[0]
    assert abs(a.energy - b.energy) < 1e-9 * abs(a.energy)


@pytest.mark.slow
def test_new_element_with_a_sparse_adapter_on_shared_weights(workdir):
    metrics = run(
        load_recipe(_recipe(workdir, "sparse_ag", base_extra="  add_elements: [Ag]\n  element_init: {Ag: Cu}\n")),
        quiet=True,
    )
    rows = json.loads((workdir / "sparse_ag" / "sparsity.json").read_text())
    adapters = {r["adapter"] for r in rows}
    assert adapters == {"new_elements", "sparse0"}
    assert {r["element"] for r in rows if r["adapter"] == "sparse0"} <= {"Cu", "Au", None}
    assert metrics["changed_parameters"] > 0
    assert json.loads((workdir / "sparse_ag" / "adapter" / "sparseft.json").read_text())["elements"]["sources"] == {
        "47": [29]
    }


@pytest.mark.slow
def test_new_elements_add_takes_them_from_the_data(workdir):
    metrics = run(
        load_recipe(_recipe(workdir, "auto_ag", data_extra="  new_elements: add\n", adapters="[]")), quiet=True
    )
    assert metrics["added_elements"] == ["Ag"]


def test_unknown_elements_error_says_how_to_add_them(workdir):
    with pytest.raises(
        ValueError, match=r"Ag \(frames 0, 2, 4.*set base.add_elements: \[Ag\] \(or data.new_elements: add\)"
    ):
        run(load_recipe(_recipe(workdir, "refused")), quiet=True)


@pytest.mark.parametrize(
    "extra, message",
    [
        ("  add_elements: [Xx]\n", r"base.add_elements\[0\]: 'Xx' is not a chemical element"),
        ("  add_elements: [Ag, Ag]\n", "base.add_elements: listed twice: Ag"),
        (
            "  add_elements: [Ag]\n  element_init: best\n",
            "base.element_init: 'best' is not one of nearest, mean, random",
        ),
    ],
)
def test_bad_element_keys_are_recipe_errors(workdir, extra, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(_recipe(workdir, "bad_keys", base_extra=extra))


def test_elements_already_in_the_base_or_unknown_in_selectors(workdir):
    with pytest.raises(RecipeError, match=r"base.add_elements: Cu already in the base model \(Cu Au\)"):
        run(load_recipe(_recipe(workdir, "has_cu", base_extra="  add_elements: [Cu]\n")), quiet=True)
    with pytest.raises(sf.SelectionError, match="names Pt, which the model neither has nor adds"):
        run(
            load_recipe(
                _recipe(
                    workdir,
                    "pt_sel",
                    base_extra="  add_elements: [Ag]\n",
                    adapters="[{method: sparse, select: {elements: [Pt]}}]",
                )
            ),
            quiet=True,
        )


RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CU_CO = Path(__file__).resolve().parents[2] / "examples" / "data" / "cu_co"


def test_cobalt_data_is_small_and_has_cobalt_free_frames():
    sizes = sum(p.stat().st_size for p in CU_CO.glob("*.xyz"))
    assert sizes < 300_000
    for name in ("train", "test"):
        frames = ase.io.read(CU_CO / f"{name}.xyz", ":")
        assert any(27 in a.numbers for a in frames) and any(27 not in a.numbers for a in frames)
        assert all(set(a.numbers.tolist()) <= {27, 29} and "REF_forces" in a.arrays for a in frames)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sparse", "cobalt only"])
def test_shipped_cobalt_recipe(tmp_path, mode):
    from sparseft.cli import main

    overrides = [f"output.directory={tmp_path / 'out'}", "train.epochs=3"]
    if mode == "cobalt only":
        overrides += ["data.E0s=foundation"]
    recipe = load_recipe(RECIPES / "embedded-add-cobalt.yaml", overrides)
    if mode == "cobalt only":
        recipe.adapters = []
    metrics = run(recipe, quiet=True)
    assert metrics["added_elements"] == ["Co"]
    if mode == "sparse":  # Co alone cannot fix the EMT -> xTB change of Cu, which dominates the test error
        assert metrics["splits"]["test"]["forces_mae"] < metrics["base_zero_shot"]["test"]["forces_mae"]
    merged_path = tmp_path / "out" / "merged.model"
    assert 27 in sf.load_model(merged_path).atomic_numbers.tolist()
    assert main(["check", str(merged_path)]) == 0
    if mode == "cobalt only":
        from sparseft.embedded import load_foundation

        torch.set_num_threads(1)
        pure = [a for a in ase.io.read(CU_CO / "test.xyz", ":") if 27 not in a.numbers]
        base, merged = load_foundation(dtype="float32"), sf.load_model(merged_path)
        for a, b in zip(sf.predict(base, pure), sf.predict(merged, pure)):
            assert (
                a.energy == b.energy and np.abs(a.forces - b.forces).max() <= 1e-14
            )  # see tests/test_elements.py::_same
