"""Test helpers users can import in their own CI: equivariance harness (report and assert
forms, a pytest fixture in :mod:`sparseft.testing.pytest_plugin`), tiny models, structures."""

from .asserts import EquivarianceError, assert_equivariant
from .equivariance import EquivarianceReport, check_equivariance
from .structures import default_structures
from .tiny import tiny_mace

__all__ = [
    "EquivarianceError",
    "EquivarianceReport",
    "assert_equivariant",
    "check_equivariance",
    "default_structures",
    "tiny_mace",
]
