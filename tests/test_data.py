"""Training data: clear errors naming file and frame; labels may be missing per frame."""

from __future__ import annotations

import hashlib

import ase.io
import numpy as np
import pytest

from sparseft.data import DataError, Keys, attach_labels, label_counts, read_frames, split, to_atomic_data, validate
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames

KEYS = Keys()


@pytest.fixture(scope="module")
def cuau_model():
    return tiny_mace(atomic_numbers=(29, 79), r_max=4.5)


def _write(tmp_path, frames, name="d.xyz"):
    path = tmp_path / name
    ase.io.write(path, frames)
    return path


def test_unknown_elements_are_listed_with_frames(tmp_path):
    frames = emt_frames(6)
    frames[2][0].symbol = "Ni"
    frames[4][1].symbol = "Pt"
    data = read_frames(_write(tmp_path, frames))
    with pytest.raises(
        DataError, match=r"d.xyz: elements the base model does not know: Ni \(frames 2\); Pt \(frames 4\)"
    ):
        validate(data, [29, 79], KEYS)


def test_nan_labels_and_positions_name_file_and_frame(tmp_path):
    frames = emt_frames(5)
    frames[3].arrays["REF_forces"][1, 2] = np.nan
    data = read_frames(_write(tmp_path, frames))
    with pytest.raises(DataError, match=r"d.xyz: frame 3: REF_forces contains NaN"):
        validate(data, [29, 79], KEYS)
    frames = emt_frames(5)
    frames[1].positions[0, 0] = np.inf
    data = read_frames(_write(tmp_path, frames, "p.xyz"))
    with pytest.raises(DataError, match=r"p.xyz: frame 1: positions contain NaN or inf"):
        validate(data, [29, 79], KEYS)


def test_missing_labels_get_zero_weight(tmp_path, cuau_model):
    frames = emt_frames(4)
    del frames[1].info["REF_stress"]
    del frames[2].info["REF_energy"]
    data = attach_labels(read_frames(_write(tmp_path, frames)), KEYS)
    assert label_counts(data, KEYS) == {"energy": 3, "forces": 4, "stress": 3, "virials": 0}
    items = to_atomic_data(data, cuau_model, KEYS)
    assert [float(x["stress_weight"]) for x in items] == [1.0, 0.0, 1.0, 1.0]
    assert [float(x["energy_weight"]) for x in items] == [1.0, 1.0, 0.0, 1.0]


def test_ase_calculator_values_are_the_fallback(tmp_path):
    from ase.calculators.emt import EMT

    frames = emt_frames(2, stress=False)
    for atoms in frames:
        del atoms.info["REF_energy"]
        del atoms.arrays["REF_forces"]
        atoms.calc = EMT()
        atoms.get_potential_energy()
        atoms.get_forces()
    path = _write(tmp_path, frames)
    data = attach_labels(read_frames(path), KEYS)
    assert label_counts(data, KEYS)["energy"] == 2 and label_counts(data, KEYS)["forces"] == 2


def test_input_files_are_never_written(tmp_path, cuau_model):
    path = _write(tmp_path, emt_frames(4))
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    data = attach_labels(read_frames(path), KEYS)
    validate(data, [29, 79], KEYS)
    to_atomic_data(data, cuau_model, KEYS)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_split_is_seeded_and_disjoint(tmp_path):
    data = read_frames(_write(tmp_path, emt_frames(10)))
    a, b = split(data, 0.3, seed=1)
    a2, b2 = split(data, 0.3, seed=1)
    assert a.indices == a2.indices and len(b.indices) == 3 and not set(a.indices) & set(b.indices)


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        read_frames(tmp_path / "none.xyz")
    (tmp_path / "bad.xyz").write_text("3\nnot a comment line\nX 0 0\n")
    with pytest.raises(DataError, match="bad.xyz: cannot read"):
        read_frames(tmp_path / "bad.xyz")


def test_virials_become_stress(tmp_path):
    frames = emt_frames(2)
    for atoms in frames:
        atoms.info["REF_virials"] = -atoms.info.pop("REF_stress") * atoms.cell.volume
    reference = emt_frames(2)
    data = attach_labels(read_frames(_write(tmp_path, frames)), KEYS)
    for atoms, ref in zip(data.atoms, reference):
        np.testing.assert_allclose(atoms.info["REF_stress"], ref.info["REF_stress"], atol=1e-10)
