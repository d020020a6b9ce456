"""Shared fixtures: tiny real MACE models built once per session, deep-copied per test."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sparseft  # noqa: E402,F401  (import order: mace before e3nn)
from sparseft._compat import torch  # noqa: E402
from sparseft.testing.tiny import tiny_mace  # noqa: E402

pytest_plugins = ["sparseft.testing.pytest_plugin"]  # the fixture users get, used by our tests too

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real"

FEATURES = {"scalar": "8x0e", "l1": "8x0e+8x1o"}
DTYPES = {"float64": torch.float64, "float32": torch.float32}

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def _tiny_models():
    return {
        (f, d): tiny_mace(hidden_irreps=irreps, dtype=dtype)
        for f, irreps in FEATURES.items()
        for d, dtype in DTYPES.items()
    }


@pytest.fixture
def make_model(_tiny_models):
    """``make_model("l1", "float64")`` -> a fresh deep copy of a tiny MACE model."""

    def make(features: str = "l1", dtype: str = "float64"):
        return copy.deepcopy(_tiny_models[(features, dtype)])

    return make


@pytest.fixture
def real_dir():
    """Path to ../shared/real; skips the test when it is absent."""
    if not (REAL / "models").is_dir():
        pytest.skip(f"real models not found at {REAL} (tests marked 'real' need ../shared/real)")
    return REAL


@pytest.fixture
def one_thread():
    """Bitwise comparisons need one thread: torch's multi-threaded CPU scatter reductions
    (used by MACE's message passing) may sum in a different order from call to call."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
