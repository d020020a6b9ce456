"""Test helpers users can import in their own CI: equivariance harness, tiny models, structures."""

from .equivariance import EquivarianceReport, check_equivariance
from .structures import default_structures
from .tiny import tiny_mace

__all__ = ["EquivarianceReport", "check_equivariance", "default_structures", "tiny_mace"]
