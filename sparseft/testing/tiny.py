"""Tiny real MACE models for tests and demos (built in :mod:`sparseft.backends.mace.tiny`, the
one place that imports mace-torch for them)."""

from ..backends.mace.tiny import LIKE, foundation_like, tiny_mace

__all__ = ["LIKE", "foundation_like", "tiny_mace"]
