"""Equivariance harness: real tiny MACE models pass, each broken wrapper fails its own check."""

from __future__ import annotations

import types

import numpy as np
import pytest
from ase.neighborlist import neighbor_list

from sparseft._compat import torch
from sparseft.testing import broken
from sparseft.testing.equivariance import (
    CHECKS,
    EquivarianceReport,
    Row,
    check_equivariance,
    predict_outputs,
)
from sparseft.testing.structures import default_structures

MODELS = [("l1", "float64"), ("scalar", "float64"), ("l1", "float32"), ("scalar", "float32")]


# --- structures ---------------------------------------------------------------------------


def test_default_structures_are_a_cluster_and_a_triclinic_cell(make_model):
    model = make_model()
    cluster, crystal = default_structures(model)
    r_max = float(model.r_max)
    assert not cluster.pbc.any() and crystal.pbc.all()
    assert not np.allclose(crystal.cell.cellpar()[3:], 90.0)
    for atoms in (cluster, crystal):
        assert 6 <= len(atoms) <= 10
        assert set(atoms.numbers) == {1, 8}
        assert len(neighbor_list("i", atoms, 1.0)) == 0  # no pair closer than 1 Å
        assert np.bincount(neighbor_list("i", atoms, r_max), minlength=len(atoms)).min() >= 2


def test_default_structures_are_deterministic(make_model):
    model = make_model()
    first, second, other = default_structures(model), default_structures(model), default_structures(model, seed=1)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first, second))
    assert not np.allclose(first[0].positions, other[0].positions)


def test_default_structures_cover_many_elements():
    elements = list(range(1, 90))
    model = types.SimpleNamespace(atomic_numbers=torch.tensor(elements), r_max=torch.tensor(5.0))
    for atoms in default_structures(model):
        assert sorted(set(atoms.numbers)) == elements and len(atoms) == len(elements)
        assert len(neighbor_list("i", atoms, 1.0)) == 0


# --- real models --------------------------------------------------------------------------


@pytest.mark.parametrize("features,dtype", MODELS)
def test_real_models_pass_every_check(make_model, features, dtype):
    report = check_equivariance(make_model(features, dtype))
    assert report.passed, report.format_table()
    assert {row.check for row in report.rows} == set(CHECKS)
    assert {row.output for row in report.rows} == {"energy", "forces", "stress"}


@pytest.mark.parametrize("features", ["l1", "scalar"])
def test_float64_errors_are_rounding_noise(make_model, features):
    errors64 = [row.max_error for row in check_equivariance(make_model(features, "float64")).rows]
    errors32 = [row.max_error for row in check_equivariance(make_model(features, "float32")).rows]
    assert max(errors64) < 1e-10
    assert max(errors64) < max(errors32) < 1e-4


def test_clusters_only_skip_periodic_checks(make_model):
    model = make_model()
    report = check_equivariance(model, default_structures(model)[:1])
    assert {row.check for row in report.rows} == {"rotation", "inversion", "translation", "permutation"}
    assert {row.output for row in report.rows} == {"energy", "forces"}


# --- broken models ------------------------------------------------------------------------

BROKEN = [
    (broken.AbsolutePositionEnergy, {("translation", "energy"), ("rotation", "energy")}, None),
    (broken.ConstantForce, {("rotation", "forces")}, None),
    (broken.AxialForce, {("inversion", "forces")}, {("inversion", "forces")}),
    (broken.IndexCoupledForce, {("permutation", "forces")}, {("permutation", "forces")}),
    (broken.UnwrappedEdgeForce, {("periodic_images", "forces")}, None),
    (broken.SizeIndependentOffset, {("supercell", "energy")}, {("supercell", "energy")}),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("wrapper,must_fail,only", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_model_fails_its_check(make_model, dtype, wrapper, must_fail, only):
    report = check_equivariance(wrapper(make_model("l1", dtype)))
    failures = set(report.failures())
    assert must_fail <= failures, report.format_table()
    if only is not None:
        assert failures == only, report.format_table()
    assert not report.passed and report.format_table().endswith(f"{len(failures)} of {len(report.rows)} failed)")


# --- output rules -------------------------------------------------------------------------


def test_axial_rule_differs_from_polar_under_inversion(make_model):
    model = make_model()

    def forces_as(name):
        return lambda m, atoms_list: [{name: out["forces"]} for out in predict_outputs(m, atoms_list)]

    as_axial = check_equivariance(model, evaluate=forces_as("f"), rules={"f": "atom_1e"})
    assert as_axial.failures() == [("inversion", "f")]
    as_polar = check_equivariance(model, evaluate=forces_as("f"), rules={"f": "atom_1o"})
    assert as_polar.passed


def _geometric_outputs(model, atoms_list):
    """Per-atom polar, axial and scalar quantities built from neighbour vectors."""
    outputs = []
    for atoms in atoms_list:
        i, vectors = neighbor_list("iD", atoms, 3.0)
        polar = np.zeros((len(atoms), 3))
        weighted = np.zeros((len(atoms), 3))
        np.add.at(polar, i, vectors)
        np.add.at(weighted, i, np.linalg.norm(vectors, axis=1, keepdims=True) * vectors)
        scalar = np.sum(polar**2, axis=1)
        outputs.append({"polar": polar, "axial": np.cross(polar, weighted), "scalar": scalar, "total": scalar.sum()})
    return outputs


def test_every_rule_transforms_its_own_kind_of_quantity(make_model):
    model = make_model()
    rules = {"polar": "atom_1o", "axial": "atom_1e", "scalar": "atom_0e", "total": "global_0e"}
    report = check_equivariance(model, evaluate=_geometric_outputs, rules=rules)
    assert report.passed, report.format_table()
    assert max(row.max_error for row in report.rows) < 1e-10
    swapped = check_equivariance(model, evaluate=_geometric_outputs, rules={**rules, "axial": "atom_1o"})
    assert swapped.failures() == [("inversion", "axial")]


def test_unknown_rule_is_rejected(make_model):
    with pytest.raises(ValueError, match="unknown rules"):
        check_equivariance(make_model(), rules={"forces": "atom_2e"})


# --- report -------------------------------------------------------------------------------


def test_report_table_and_dict():
    rows = [
        Row("rotation", "forces", 2e-15, 1e-8),
        Row("periodic_images", "energy", 0.5, 1e-8),
        Row("inversion", "stress", float("nan"), 1e-8),
    ]
    report = EquivarianceReport(rows)
    lines = report.format_table().splitlines()
    assert len(lines) == 1 + 3 + 1 and lines[-1] == "FAIL (2 of 3 failed)"
    assert len({len(line) - len(line.split()[-1]) for line in lines[:-1]}) == 1  # last column aligned
    assert report.failures() == [("periodic_images", "energy"), ("inversion", "stress")]
    as_dict = report.to_dict()
    assert as_dict["passed"] is False and [r["passed"] for r in as_dict["rows"]] == [True, False, False]
    assert EquivarianceReport(report.rows[:1]).format_table().splitlines()[-1] == "PASS"
