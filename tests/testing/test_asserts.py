"""The assert-style entry point and the pytest fixture users put in their own CI."""

from __future__ import annotations

import pytest

from sparseft.testing import EquivarianceError, EquivarianceReport, broken
from sparseft.testing import assert_equivariant as assert_equivariant_function


def test_the_fixture_passes_a_mace_model_and_returns_the_report(make_model, assert_equivariant):
    assert assert_equivariant is assert_equivariant_function
    report = assert_equivariant(make_model("l1", "float64"))
    assert isinstance(report, EquivarianceReport) and report.passed


def test_a_broken_model_raises_with_the_table(make_model):
    with pytest.raises(EquivarianceError, match=r"not equivariant \(inversion/forces\)") as info:
        assert_equivariant_function(broken.AxialForce(make_model("l1", "float64")))
    assert isinstance(info.value, AssertionError)
    assert "FAIL" in str(info.value) and "max_error" in str(info.value)
