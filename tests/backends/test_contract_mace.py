"""A tiny MACE (l=1 features) meets the backend contract."""

from __future__ import annotations

import pytest

from sparseft._compat import torch
from sparseft.testing.contract import BackendContract, BackendRunContract
from sparseft.testing.structures import default_structures
from sparseft.testing.tiny import tiny_mace


@pytest.fixture(scope="module")
def base():
    return tiny_mace(atomic_numbers=(1, 8))


@pytest.fixture(scope="module")
def structures(base):
    return default_structures(base, seed=0)[:2]


@pytest.fixture(scope="module")
def base_name(base, tmp_path_factory):
    path = tmp_path_factory.mktemp("mace") / "tiny.model"
    torch.save(base, path)
    return str(path)


class TestMaceContract(BackendContract, BackendRunContract):
    pass
