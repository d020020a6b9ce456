"""New elements: extending a model's element table, training only the new element, files, engines."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

import sparseft as sf
from sparseft._compat import torch
from sparseft.elements import ElementError, extend_elements, group_period, nearest_element
from sparseft.model import ELEMENT_ADAPTER
from sparseft.select import SelectionError
from sparseft.testing.equivariance import check_equivariance
from sparseft.testing.structures import default_structures


def _with_carbon(seed: int = 0) -> Atoms:
    """An H/O/C cluster with C (the element the tiny model lacks)."""
    rng = np.random.default_rng(seed)
    grid = np.array([(i, j, k) for i in range(2) for j in range(2) for k in range(2)], float) * 1.5
    return Atoms(numbers=[6, 1, 8, 1, 6, 8, 1, 1], positions=grid + rng.uniform(-0.2, 0.2, grid.shape))


def _same(a, b) -> bool:
    """Energies equal; forces equal up to the rounding of a contraction over a wider one-hot.
    The extra element's zero column is exact, but CPU kernels may order the FMAs of an
    (N, 3) @ (3, C) product differently from (N, 2) @ (2, C): forces then differ by ~1e-16 (float64)."""
    scale = np.finfo(a.forces.dtype).eps * 8 * max(1.0, float(np.abs(a.forces).max()))
    return a.energy == b.energy and bool(np.abs(a.forces - b.forces).max() <= scale)


def _train_steps(adapted, atoms_list, steps: int = 3):
    from sparseft.predict import atoms_to_batch

    batch = atoms_to_batch(atoms_list, adapted)
    optimizer = torch.optim.Adam(adapted.trainable_parameters(), lr=1e-2)
    for _ in range(steps):
        out = adapted(batch, training=True, compute_force=True)
        loss = (out["energy"] ** 2).mean() + (out["forces"] ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_periodic_table_neighbours():
    assert group_period(7) == (15, 2) and group_period(27) == (9, 4) and group_period(79) == (11, 6)
    assert group_period(64) == (3, 6) and group_period(86) == (18, 6) and group_period(1) == (1, 1)
    assert nearest_element(7, [1, 6, 8]) == 6  # no group-15 element: same row, nearest group, lower Z
    assert nearest_element(27, [13, 28, 29, 46, 47, 78, 79]) == 28  # Co -> Ni
    assert nearest_element(26, [13, 28, 29, 46, 47, 78, 79]) == 28  # Fe -> Ni (nearest group in row 4)
    assert nearest_element(78, [28, 29, 46]) == 46  # Pt -> Pd (same group, nearest row)


@pytest.mark.parametrize(
    "bad, message",
    [
        (["Xx"], "'Xx' is not a chemical element"),
        ([0], "0 is not a chemical element"),
        (["O"], "O already in the base model"),
        (["C", "C"], "listed twice: C"),
    ],
)
def test_bad_element_lists_are_errors(make_model, bad, message):
    with pytest.raises(ElementError, match=message):
        extend_elements(make_model("l1", "float64"), bad)


def test_bad_init_is_an_error(make_model):
    with pytest.raises(ElementError, match="element_init.C: Au is not in the base model"):
        extend_elements(make_model("l1", "float64"), ["C"], init={"C": "Au"})
    with pytest.raises(ElementError, match="'best' is not one of nearest, mean, random"):
        extend_elements(make_model("l1", "float64"), ["C"], init="best")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("init", ["nearest", "mean", "random"])
def test_extension_keeps_old_elements_bit_identical(make_model, one_thread, dtype, init):
    base = make_model("l1", dtype)
    extended = extend_elements(base, ["C"], init=init)
    assert type(extended) is type(base)
    assert extended.atomic_numbers.tolist() == [1, 6, 8]
    for a, b in zip(sf.predict(base, default_structures(base)), sf.predict(extended, default_structures(base))):
        assert _same(a, b)
    energy = sf.predict(extended, [_with_carbon()])[0].energy
    assert np.isfinite(energy)


def test_nearest_init_copies_the_source_element(make_model, one_thread):
    base = make_model("l1", "float64")
    extended = extend_elements(base, ["C"], init={"C": "O"})
    carbon, oxygen = _with_carbon(), _with_carbon()
    oxygen.numbers[oxygen.numbers == 6] = 8
    a, b = sf.predict(extended, [carbon])[0], sf.predict(base, [oxygen])[0]
    assert abs(a.energy - b.energy) < 1e-9 and np.abs(a.forces - b.forces).max() < 1e-9


def test_only_the_new_element_trains_and_old_structures_stay_bit_identical(make_model, one_thread):
    base = make_model("l1", "float64")
    adapted = sf.wrap(base, [], add_elements=["C"])
    assert list(adapted.parts) == [ELEMENT_ADAPTER]
    blocks = [b for b, _, _ in adapted.parts[ELEMENT_ADAPTER]["node_embedding.linear.weight"].block_slices()]
    assert all(b.element == 6 for b in blocks)
    before = sf.predict(adapted, [_with_carbon()])[0]
    _train_steps(adapted, [_with_carbon(), _with_carbon(1)])
    after = sf.predict(adapted, [_with_carbon()])[0]
    assert abs(after.energy - before.energy) > 1e-6
    old = default_structures(base)
    for a, b in zip(sf.predict(base, old), sf.predict(adapted, old)):
        assert _same(a, b)
    merged = adapted.merge()
    for a, b in zip(sf.predict(base, old), sf.predict(merged, old)):
        assert _same(a, b)
    assert adapted.base_fingerprint == sf.fingerprint(base)


def test_other_adapters_act_on_shared_weights_only(make_model):
    base = make_model("l1", "float64")
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["skip", "contraction"]))], add_elements=["C"])
    sparse_blocks = [b for _, part in adapted.parts["sparse0"].items() for b, _, _ in part.block_slices()]
    assert sparse_blocks and all(b.element != 6 for b in sparse_blocks)
    assert {b.element for b in sparse_blocks} == {1, 8}
    element_blocks = [b for part in adapted.parts[ELEMENT_ADAPTER].values() for b, _, _ in part.block_slices()]
    assert {b.kind for b in element_blocks} >= {"embedding", "skip", "contraction"}


def test_selector_errors_name_the_elements(make_model):
    base = make_model("l1", "float64")
    with pytest.raises(SelectionError, match=r"names Au, which the model neither has nor adds \(elements: H C O\)"):
        sf.wrap(base, [sf.SparseConfig(select=sf.Selector(elements=["Au"]))], add_elements=["C"])
    with pytest.raises(SelectionError, match="leaves only blocks of the added elements"):
        sf.wrap(base, [sf.SparseConfig(select=sf.Selector(elements=["C"]))], add_elements=["C"])
    with pytest.raises(ValueError, match="'new_elements' is reserved"):
        sf.wrap(base, [sf.FreezeConfig(name=ELEMENT_ADAPTER)], add_elements=["C"])


def test_adapter_files_re_create_the_extension(make_model, tmp_path, one_thread):
    base = make_model("l1", "float64")
    adapted = sf.wrap(
        base, [sf.LoRAConfig(select=sf.Selector(kinds=["linear"]), rank=2)], add_elements=["C"], element_init="random"
    )
    _train_steps(adapted, [_with_carbon(), _with_carbon(1)])
    sf.save_adapter(adapted, tmp_path / "adapter")
    import json

    meta = json.loads((tmp_path / "adapter" / "sparseft.json").read_text())
    assert meta["elements"]["added"] == [6] and meta["elements"]["z_table"] == [1, 6, 8]
    assert meta["base"]["z_table"] == [1, 8]  # the fingerprint still names the original base
    loaded = sf.load_adapter(make_model("l1", "float64"), tmp_path / "adapter")
    assert loaded.atomic_numbers.tolist() == [1, 6, 8]
    structures = [_with_carbon(), *default_structures(base)]
    for a, b in zip(sf.predict(adapted, structures), sf.predict(loaded, structures)):
        assert _same(a, b)
    with pytest.raises(sf.AdapterFileError, match="element table differs"):
        sf.load_adapter(adapted.merge(), tmp_path / "adapter")


def _trained_merged(make_model, dtype="float64"):
    base = make_model("l1", dtype)
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["skip"]))], add_elements=["C"])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    return adapted, adapted.merge()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_extended_model_is_equivariant(make_model, dtype):
    _, merged = _trained_merged(make_model, dtype)
    report = check_equivariance(merged, [_with_carbon(), *default_structures(merged)])
    assert report.passed, report.format_table()
    worst = max(r.max_error for r in report.rows if r.output == "forces")
    assert worst < (1e-10 if dtype == "float64" else 1e-4)


def test_merged_model_runs_in_mace_tools(make_model, tmp_path, monkeypatch):
    from mace.calculators import MACECalculator
    from mace.cli import create_lammps_model

    adapted, merged = _trained_merged(make_model)
    torch.save(merged, tmp_path / "merged.model")
    atoms = _with_carbon()
    expected = sf.predict(adapted, [atoms])[0]
    atoms.calc = MACECalculator(model_paths=str(tmp_path / "merged.model"), device="cpu", default_dtype="float64")
    assert abs(atoms.get_potential_energy() - expected.energy) <= 1e-10 * abs(expected.energy)
    assert np.abs(atoms.get_forces() - expected.forces).max() <= 1e-10
    monkeypatch.setattr("sys.argv", ["mace_create_lammps_model", str(tmp_path / "merged.model")])
    create_lammps_model.main()
    lammps = torch.jit.load(str(tmp_path / "merged.model-lammps.pt"))
    assert lammps.model.atomic_numbers.tolist() == [1, 6, 8]
    from sparseft.cli import main

    assert main(["check", str(tmp_path / "merged.model")]) == 0


def test_md_with_the_new_element_conserves_energy(make_model):
    from ase import units
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    _, merged = _trained_merged(make_model)
    atoms = _with_carbon()
    atoms.calc = sf.Calculator(merged)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    energies = []
    dyn = VelocityVerlet(atoms, 0.25 * units.fs)
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dyn.run(80)
    drift = (energies[-1] - energies[0]) / len(atoms)
    fluctuation = np.std(energies) / len(atoms)
    assert abs(drift) < 1e-3 and fluctuation < 1e-3, (drift, fluctuation)
    assert abs(atoms.get_kinetic_energy()) > 0
