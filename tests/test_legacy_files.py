"""Adapter directories written by sparseft before the issue-9 refactor still load and
reproduce the prediction recorded in them (``tests/data/make_legacy_adapters.py`` wrote them
with the code of commit 8edbfad)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparseft import load_adapter
from sparseft.embedded import load_foundation

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def foundation64():
    return load_foundation(dtype="float64")


def test_legacy_adapter_loads_and_reproduces_its_reference(foundation64):
    adapted = load_adapter(foundation64, DATA / "legacy_adapter")  # checks hash, fingerprint, reference
    assert [c.name for c in adapted.configs] == ["s", "l", "f"]
    assert set(adapted.changed_buffers()) == {"atomic_energies_fn.atomic_energies"}
    density = adapted.density()
    assert 0 < density["adapters"]["s"] <= 0.05 + 1e-9  # the fixed support came back
    assert density["adapters"]["l"] > 0 and density["adapters"]["f"] > 0


def test_legacy_adapter_with_heads_loads(foundation64):
    loaded = load_adapter(foundation64, DATA / "legacy_adapter_heads")
    assert list(loaded.output_heads) == ["dft", "spin", "vec"]
