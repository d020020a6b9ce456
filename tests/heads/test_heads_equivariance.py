"""Each head through the equivariance harness by its declared irreps, in float64 (tight) and
float32 (loose); a head that declares 1e but outputs 1o must fail inversion, and only it."""

from __future__ import annotations

import pytest

from sparseft import SparseConfig, wrap
from sparseft._compat import torch
from sparseft.heads import HeadedModel, HeadError, build_head, feature_irreps
from sparseft.testing import check_equivariance
from sparseft.testing.broken import PolarVectorMagmomHead
from sparseft.testing.equivariance import head_rules


def _with_heads(model, kinds=("energy", "magmom", "vector_magmom")):
    adapted = HeadedModel(wrap(model, [SparseConfig()]))
    for kind in kinds:
        adapted.add_head(build_head(f"h_{kind}", kind, {}, adapted.base, seed=3))
    with torch.no_grad():  # move every head and delta off its starting point
        generator = torch.Generator().manual_seed(0)
        for p in list(adapted.output_heads.parameters()) + adapted.trainable_parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return adapted


def test_head_rules_follow_declared_irreps(make_model):
    rules, floors = head_rules(_with_heads(make_model("l1")))
    assert rules == {
        "h_energy.energy": "global_0e",
        "h_energy.forces": "atom_1o",
        "h_energy.stress": "global_tensor2",
        "h_magmom.magmoms": "atom_0e",
        "h_vector_magmom.magmoms": "atom_1e",
    }
    assert floors["h_vector_magmom.magmoms"] < 1e-6


@pytest.mark.parametrize("dtype, worst", [("float64", 1e-10), ("float32", 1e-4)])
def test_every_head_passes_every_check(make_model, dtype, worst):
    adapted = _with_heads(make_model("l1", dtype))
    report = check_equivariance(adapted)
    assert report.passed, report.format_table()
    names = {row.output for row in report.rows}
    assert {"h_energy.forces", "h_energy.stress", "h_magmom.magmoms", "h_vector_magmom.magmoms"} <= names
    assert max(row.max_error for row in report.rows) < worst


def test_heads_produce_non_trivial_outputs(make_model):
    from sparseft.predict import predict
    from sparseft.testing import default_structures

    adapted = _with_heads(make_model("l1"))
    pred = predict(adapted, default_structures(adapted)[:1])[0]
    assert abs(pred.heads["h_energy"]["energy"] - pred.energy) > 1e-6
    assert abs(pred.heads["h_vector_magmom"]["magmoms"]).max() > 1e-6  # the checks above compare real numbers
    assert abs(pred.heads["h_magmom"]["magmoms"]).max() > 1e-3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wrong_parity_vector_head_fails_inversion_only(make_model, dtype):
    adapted = HeadedModel(wrap(make_model("l1", dtype), [SparseConfig()]))
    plain = adapted.base
    wrong = PolarVectorMagmomHead("wrong", {}, irreps_list=feature_irreps(plain), num_elements=2)
    wrong = wrong.to(plain.atomic_energies_fn.atomic_energies.dtype)
    adapted.add_head(wrong)
    report = check_equivariance(adapted)
    failed = {(row.check, row.output) for row in report.rows if not row.passed}
    assert failed == {("inversion", "wrong.magmoms")}, report.format_table()


def test_vector_head_on_scalar_model_is_a_clear_error(make_model):
    with pytest.raises(HeadError, match=r"needs l=1 odd-parity \(1o\) node features.*8x0e.*kind: magmom"):
        build_head("spin", "vector_magmom", {}, make_model("scalar"))


def test_collinear_head_works_on_scalar_model(make_model):
    adapted = HeadedModel(wrap(make_model("scalar"), [SparseConfig()]))
    adapted.add_head(build_head("spin", "magmom", {}, adapted.base))
    assert check_equivariance(adapted).passed
