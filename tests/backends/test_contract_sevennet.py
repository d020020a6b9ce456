"""SevenNet-0 (shipped inside the sevenn wheel) meets the backend contract."""

from __future__ import annotations

import pytest
from ase.build import bulk, molecule

import sparseft as sf
from sparseft.testing.contract import BackendContract, BackendRunContract


@pytest.fixture(scope="module")
def base():
    return sf.load_model("sevennet:7net-0")


@pytest.fixture(scope="module")
def structures():
    cell = bulk("NaCl", "rocksalt", a=5.64)
    cell.rattle(0.05, seed=0)
    water = molecule("H2O")
    return [cell, water]


@pytest.fixture(scope="module")
def base_name():
    return "sevennet:7net-0"


class TestSevenNetContract(BackendContract, BackendRunContract):
    pass
