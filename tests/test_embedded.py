"""The embedded mini-foundation and the quick-start recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sparseft import embedded
from sparseft.blocks import blocks
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing import check_equivariance

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


@pytest.fixture(scope="module")
def foundation():
    return embedded.load_foundation(dtype="float64")


def test_foundation_is_a_plain_mace_model_of_emt_metals(foundation):
    assert type(foundation).__name__ == "ScaleShiftMACE"
    assert [int(z) for z in foundation.atomic_numbers] == [13, 28, 29, 46, 47, 78, 79]
    assert sum(b.size for b in blocks(foundation)) == sum(p.numel() for p in foundation.parameters())
    assert embedded.FOUNDATION_WEIGHTS.stat().st_size < 1_500_000


def test_foundation_is_equivariant(foundation):
    report = check_equivariance(foundation)
    assert report.passed, report.format_table()


def test_a_modified_weights_file_is_refused(tmp_path):
    weights = tmp_path / "w.safetensors"
    shutil.copy(embedded.FOUNDATION_WEIGHTS, weights)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match"):
        embedded._build(embedded.FOUNDATION_CONFIG, weights)


def test_quickstart_recipe_runs_briefly(tmp_path):
    recipe = load_recipe(
        QUICKSTART, overrides=[f"output.directory={tmp_path / 'out'}", "train.max_steps=3", "train.epochs=1"]
    )
    metrics = run(recipe, quiet=True)
    assert set(metrics["splits"]) == {"valid", "test"}  # train is skipped unless output.evaluate_train
    assert (tmp_path / "out" / "merged.model").is_file()
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["steps"] == 3
