"""A pytest plugin for users' CI: the ``assert_equivariant`` fixture.

Enable it with ``pytest -p sparseft.testing.pytest_plugin`` or, in a ``conftest.py``,
``pytest_plugins = ["sparseft.testing.pytest_plugin"]``; then::

    def test_my_model_is_equivariant(assert_equivariant):
        assert_equivariant(sparseft.load_model("my.model", dtype="float64"))
"""

from __future__ import annotations

import pytest

from .asserts import assert_equivariant as _assert_equivariant


@pytest.fixture
def assert_equivariant():
    """:func:`sparseft.testing.assert_equivariant`: raises with the report table on failure."""
    return _assert_equivariant
