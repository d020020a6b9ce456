"""Real third-party MACE models from ../shared/real (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.blocks import blocks
from sparseft.predict import predict
from sparseft.testing.equivariance import check_equivariance
from sparseft.testing.structures import default_structures

pytestmark = pytest.mark.real


def _models(real_dir):
    paths = sorted((real_dir / "models").glob("*.model"))
    assert paths, f"no .model files in {real_dir / 'models'}"
    return paths


def test_every_real_model_loads_and_is_catalogued(real_dir):
    for path in _models(real_dir):
        model = sf.load_model(path)
        covered = sum(b.size for b in blocks(model))
        assert covered == sum(p.numel() for p in model.parameters()), path.name
        model64 = sf.load_model(path, dtype="float64")
        assert next(model64.parameters()).dtype == torch.float64, path.name
        assert [b.name for b in blocks(model64)] == [b.name for b in blocks(model)], path.name


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_real_models_adapt_merge_and_stay_equivariant(real_dir, tmp_path, one_thread, dtype):
    for path in _models(real_dir):
        base = sf.load_model(path, dtype=dtype)
        adapted = sf.wrap(
            base,
            [
                sf.SparseConfig(select=sf.Selector(kinds=["skip", "contraction"])),
                sf.LoRAConfig(select=sf.Selector(kinds=["linear", "radial"]), rank=2),
            ],
        )
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in adapted.trainable_parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) * 0.02)
        report = check_equivariance(adapted)
        assert report.passed, f"{path.name}\n{report.format_table()}"
        merged = adapted.merge()
        s = default_structures(base)
        tol = 1e-10 if dtype == "float64" else 1e-5
        for x, y in zip(predict(adapted, s), predict(merged, s)):
            scale = max(np.abs(x.forces).max(), 1.0)
            assert np.abs(x.forces - y.forces).max() <= tol * scale
        sf.save_adapter(adapted, tmp_path / path.stem / dtype)
        loaded = sf.load_adapter(base, tmp_path / path.stem / dtype)
        assert predict(loaded, s[:1])[0].energy == predict(adapted, s[:1])[0].energy


def test_real_adapter_refuses_the_other_real_model(real_dir, tmp_path):
    first, second = _models(real_dir)[:2]
    adapted = sf.wrap(sf.load_model(first), [sf.SparseConfig()])
    sf.save_adapter(adapted, tmp_path / "ad")
    with pytest.raises(sf.AdapterFileError, match="another base model"):
        sf.load_adapter(sf.load_model(second), tmp_path / "ad")


def test_sparse_adapter_of_a_real_model_is_small(real_dir, tmp_path):
    path = real_dir / "models" / "mace_tutorial_ECEMC_xtb_mace01_swa.model"
    base = sf.load_model(path)
    adapted = sf.wrap(base, [sf.SparseConfig()])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_()
    adapted.fix_support(density=0.03)
    sf.save_adapter(adapted, tmp_path / "ad")
    size = (tmp_path / "ad" / "adapter.safetensors").stat().st_size
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    assert size <= 0.10 * base_bytes, (size, base_bytes)
