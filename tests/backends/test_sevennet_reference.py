"""SevenNet-0 through sparseft equals sevenn's own ``SevenNetCalculator``.

The reference values (``sevennet_reference.json``) were computed by ``SevenNetCalculator(model=
"7net-0")`` in a separate environment with the e3nn sevenn declares (0.5.x; versions in the
file). Here, in sparseft's environment (e3nn 0.4.4, sevenn imported with its e3nn check passed by
``sparseft.backends.sevennet._import.sevenn``), both sparseft's model and sevenn's calculator
must reproduce them to float32 noise: the check sevenn makes is safe to pass for checkpoints,
which carry their Clebsch-Gordan coefficients.

Observed on the machine that pinned them (2026-12-07): energy |dE| <= 1.9e-6 eV, forces
<= 3.6e-6 eV/Å, stress <= 1.4e-8 eV/Å^3; the tolerances below leave float32 room.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sparseft  # noqa: E402
from sparseft._compat import torch  # noqa: E402

if importlib.util.find_spec("sevenn") is None:  # not importorskip: a plain `import sevenn` fails under e3nn 0.4.4
    pytest.skip("the SevenNet backend needs sevenn (pip install --no-deps sevenn==0.13.0)", allow_module_level=True)

REFERENCE = Path(__file__).with_name("sevennet_reference.json")
NAMES = ("nacl_rattled", "ethanol")
ENERGY_TOL = 2e-4  # eV
FORCE_TOL = 5e-5  # eV/Å (float32 model)
STRESS_TOL = 1e-6  # eV/Å^3


def ase_structures() -> dict:
    """The reference structures, rebuilt with ase (deterministic)."""
    from ase.build import bulk, molecule

    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    nacl.rattle(0.05, seed=3)
    return {"nacl_rattled": nacl, "ethanol": molecule("CH3CH2OH")}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def _atoms(reference: dict, name: str):
    from ase import Atoms

    r = reference["structures"][name]
    return Atoms(numbers=r["numbers"], positions=r["positions"], cell=r["cell"], pbc=r["pbc"])


@pytest.fixture(scope="module")
def model():
    """SevenNet-0 through sparseft, loaded once for the module (~6 s)."""
    return sparseft.load_model("sevennet:7net-0")


def _seven_calculator(model: str):
    """sevenn's own calculator, imported through sparseft's one sevenn import (e3nn 0.4.4 here)."""
    import warnings

    from sparseft.backends.sevennet._import import sevenn

    sevenn()
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no tensor product accelerator"
        return SevenNetCalculator(model=model, device="cpu")


@pytest.fixture(scope="module")
def seven_calculator():
    return _seven_calculator("7net-0")


def _check(name: str, ref: dict, energy, forces, stress, *, check_stress: bool = True) -> None:
    r = ref["structures"][name]
    assert abs(energy - r["energy"]) < ENERGY_TOL, (name, energy, r["energy"])
    df = np.abs(np.asarray(forces, dtype=float) - np.array(r["forces"])).max()
    assert df < FORCE_TOL, (name, "max |dF|", df)
    if check_stress and r["stress"] is not None:
        ds = np.abs(np.asarray(stress, dtype=float).reshape(3, 3) - np.array(r["stress"])).max()
        assert ds < STRESS_TOL, (name, "max |dstress|", ds)


def test_reference_structures_rebuild_identically(reference):
    for name, atoms in ase_structures().items():
        r = reference["structures"][name]
        np.testing.assert_allclose(atoms.get_positions(), r["positions"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.array(atoms.get_cell()), r["cell"], rtol=0, atol=1e-12)
        assert atoms.get_atomic_numbers().tolist() == r["numbers"]
        assert [bool(p) for p in atoms.get_pbc()] == r["pbc"]


@pytest.mark.parametrize("name", NAMES)
def test_sparseft_predict_matches_sevenn(model, reference, name):
    from sparseft.predict import predict

    p = predict(model, [_atoms(reference, name)])[0]
    if reference["structures"][name]["stress"] is None:
        assert p.stress is None  # non-periodic: no stress
    _check(name, reference, p.energy, p.forces, p.stress)


def test_sparseft_batch_of_both_matches_sevenn(model, reference):
    """Both structures in one batch (periodic and not): per-structure energies and forces."""
    from sparseft.predict import predict

    preds = predict(model, [_atoms(reference, n) for n in NAMES], stress=False)
    for name, p in zip(NAMES, preds):
        _check(name, reference, p.energy, p.forces, None, check_stress=False)


def test_sparseft_training_call_matches_sevenn(model, reference):
    """The call a training step makes: training=True (create_graph), forces, no stress."""
    from sparseft.predict import atoms_to_batch

    for name in NAMES:
        batch = atoms_to_batch([_atoms(reference, name)], model)
        out = model(batch, training=True, compute_force=True, compute_stress=False)
        r = reference["structures"][name]
        assert abs(float(out["energy"].detach()[0]) - r["energy"]) < ENERGY_TOL
        assert np.abs(out["forces"].detach().double().numpy() - np.array(r["forces"])).max() < FORCE_TOL


def test_stress_alone_equals_stress_with_forces(model, reference):
    """A call asking for stress and no forces (positions still need their gradient for the strain)."""
    from sparseft.predict import atoms_to_batch

    both = model(atoms_to_batch([_atoms(reference, "nacl_rattled")], model), compute_force=True, compute_stress=True)
    alone = model(atoms_to_batch([_atoms(reference, "nacl_rattled")], model), compute_force=False, compute_stress=True)
    assert alone["forces"] is None and both["forces"] is not None
    assert torch.allclose(alone["stress"], both["stress"], atol=1e-9) and float(both["stress"].abs().max()) > 1e-5


def test_sparseft_calculator_matches_sevenn(model, reference):
    from sparseft.calculator import Calculator

    calc = Calculator(copy.deepcopy(model))
    for name in NAMES:
        atoms = _atoms(reference, name)
        atoms.calc = calc
        periodic = reference["structures"][name]["stress"] is not None
        stress = atoms.get_stress(voigt=False) if periodic else None
        _check(name, reference, atoms.get_potential_energy(), atoms.get_forces(), stress)


@pytest.mark.parametrize("name", NAMES)
def test_sevenn_calculator_under_e3nn_044_matches_reference(seven_calculator, reference, name):
    """sevenn itself, imported with its e3nn >= 0.5 check passed, reproduces the e3nn 0.5 values."""
    atoms = _atoms(reference, name)
    atoms.calc = seven_calculator
    periodic = reference["structures"][name]["stress"] is not None
    stress = atoms.get_stress(voigt=False) if periodic else None
    _check(name, reference, atoms.get_potential_energy(), atoms.get_forces(), stress)


def test_saved_checkpoint_reloads_in_sevenn_calculator(model, reference, tmp_path):
    """The base model written as a sevenn checkpoint (what a merged fine-tune writes) and read
    back by ``SevenNetCalculator(model=path)`` gives the base model's values. (A file that kept
    SevenNet-0's config version, 0.9.1, made sevenn re-apply its old-checkpoint weight sort to
    already-sorted weights on reload: ethanol off by 1.77 eV, forces by 2.6 eV/Å.)"""
    from sparseft.backends.sevennet.checkpoint import save

    path = tmp_path / "merged.pth"
    save(model, path)
    calc = _seven_calculator(str(path))
    for name in NAMES:
        atoms = _atoms(reference, name)
        atoms.calc = calc
        _check(name, reference, atoms.get_potential_energy(), atoms.get_forces(), None, check_stress=False)


def test_saved_checkpoint_deploys_with_sevenn_get_model(model, tmp_path):
    """``sevenn get_model merged.pth`` (sevenn's TorchScript deployment for LAMMPS) accepts the
    file sparseft writes, and the deployed module loads."""
    import torch

    from sparseft.backends.sevennet._import import sevenn
    from sparseft.backends.sevennet.checkpoint import save

    save(model, tmp_path / "merged.pth")
    sevenn()
    from sevenn.scripts.deploy import deploy

    deploy(str(tmp_path / "merged.pth"), str(tmp_path / "deployed_serial.pt"))
    deployed = torch.jit.load(str(tmp_path / "deployed_serial.pt"))
    assert deployed.original_name == "AtomGraphSequential"


def test_float64_model_matches_sevenn(model, reference):
    from sparseft.backends.sevennet.checkpoint import to_dtype
    from sparseft.predict import predict

    m64 = to_dtype(model, torch.float64)
    for name in NAMES:
        p = predict(m64, [_atoms(reference, name)])[0]
        _check(name, reference, p.energy, p.forces, p.stress)
