"""Heads on real data from ../shared/real (skipped when absent): DeePMD NiO vector moments are
read as 1e labels and a vector head is checked on those crystals; a vector head on the real
scalar-only xTB model is refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest

from sparseft import SparseConfig, load_model, wrap
from sparseft._compat import torch
from sparseft.data import Keys, MagmomKeys, attach_labels, read_frames, to_atomic_data, validate
from sparseft.heads import HeadedModel, HeadError, build_head, feature_irreps
from sparseft.testing import check_equivariance
from sparseft.testing.broken import PolarVectorMagmomHead
from sparseft.testing.tiny import tiny_mace

pytestmark = pytest.mark.real
NIO = "data/DeePMD_NiO_spin/NiO_spin_all.extxyz"
SPIN = MagmomKeys("spin", None, vector=True)


@pytest.fixture(scope="module")
def nio_frames(request):
    from ..conftest import REAL

    if not (REAL / NIO).is_file():
        pytest.skip(f"{REAL / NIO} not found")
    frames = read_frames(REAL / NIO)
    return attach_labels(frames, Keys(), extra=[SPIN])


@pytest.fixture(scope="module")
def nio_model():
    return tiny_mace(atomic_numbers=(8, 28), hidden_irreps="8x0e+8x1o", r_max=3.5)


def test_nio_vector_moments_are_read_as_1e_labels(nio_frames, nio_model):
    validate(nio_frames, [8, 28], Keys(), extra=[SPIN])
    atoms = nio_frames.atoms[0]
    norms = np.linalg.norm(atoms.arrays["spin"], axis=1)
    assert np.all((norms[atoms.numbers == 28] > 1.2) & (norms[atoms.numbers == 28] < 1.3))
    assert np.allclose(norms[atoms.numbers == 8], 0.0)
    data = to_atomic_data(
        nio_frames.__class__(nio_frames.path, nio_frames.atoms[:2], [0, 1]), nio_model, Keys(), heads=[("spin", SPIN)]
    )
    assert data[0]["spin__magmoms"].shape == (32, 3)
    assert float(data[0]["spin__magmoms_weight"]) == 1.0


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_vector_head_is_equivariant_on_nio_crystals(nio_frames, nio_model, dtype, rtol):
    structures = [a.copy() for a in nio_frames.atoms[::60]]
    for atoms in structures:
        atoms.rattle(0.05, seed=1)  # off the ideal rock-salt sites, where 1o features vanish
    adapted = HeadedModel(wrap(nio_model.to(dtype), [SparseConfig()]))
    adapted.add_head(build_head("spin", "vector_magmom", {}, adapted.base, seed=0))
    wrong = PolarVectorMagmomHead("wrong", {}, irreps_list=feature_irreps(adapted.base), num_elements=2)
    adapted.add_head(wrong.to(dtype))
    report = check_equivariance(adapted, structures, rtol=rtol, supercell=(1, 1, 1))
    failed = {(row.check, row.output) for row in report.rows if not row.passed}
    assert failed == {("inversion", "wrong.magmoms")}, report.format_table()


def test_vector_head_on_the_real_scalar_model_is_refused(real_dir):
    model = load_model(real_dir / "models" / "mace_tutorial_ECEMC_xtb_mace01_swa.model")
    with pytest.raises(HeadError, match=r"32x0e.*scalars only"):
        build_head("spin", "vector_magmom", {}, model)
