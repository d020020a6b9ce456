"""Assert-style equivariance checks for users' own test suites (e3nn-style)."""

from __future__ import annotations

from .._compat import torch
from .equivariance import EquivarianceReport, check_equivariance


class EquivarianceError(AssertionError):
    """A model's outputs do not transform as they must; the message is the report table."""


def assert_equivariant(model: torch.nn.Module, structures=None, **options) -> EquivarianceReport:
    """Run :func:`check_equivariance` (same arguments) and raise :class:`EquivarianceError`,
    an ``AssertionError`` whose message is the report table, when any check fails; returns
    the report when all pass."""
    report = check_equivariance(model, structures, **options)
    if not report.passed:
        failed = ", ".join(f"{check}/{output}" for check, output in report.failures())
        raise EquivarianceError(f"not equivariant ({failed}):\n{report.format_table()}")
    return report
