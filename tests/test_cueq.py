"""cuEquivariance conversion of a merged model with mace's own converter: same outputs.

Needs cuequivariance-torch (``pip install 'sparseft[cueq]'``); skipped without it. On CPU
cuEquivariance runs its pure-torch fallback; the CUDA variant needs a GPU."""

from __future__ import annotations

import numpy as np
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.backends.mace import cueq
from sparseft.predict import predict
from sparseft.testing.structures import default_structures
from sparseft.testing.tiny import tiny_mace

needs_cueq = pytest.mark.skipif(not cueq.available(), reason="cuequivariance-torch is not installed")


def _merged(device: str):
    base = tiny_mace(atomic_numbers=(1, 8), correlation=3).to(device)
    adapted = sf.wrap(
        base,
        [
            sf.SparseConfig(select=sf.Selector(kinds=["contraction", "skip"])),
            sf.LoRAConfig(select=sf.Selector(kinds=["linear"]), rank=2),
        ],
    )
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.05)
    return base, adapted.merge()


@pytest.mark.slow
@needs_cueq
@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))],
)
def test_merged_model_converts_and_gives_the_same_outputs(device):
    base, merged = _merged(device)
    converted = cueq.to_cueq(merged)
    assert torch.get_default_dtype() == torch.float32  # the converter's global change is undone
    structures = default_structures(merged)[:2]
    for a, b, zero in zip(predict(merged, structures), predict(converted, structures), predict(base, structures)):
        assert abs(a.energy - b.energy) <= 1e-10 * max(abs(a.energy), 1.0)
        np.testing.assert_allclose(b.forces, a.forces, rtol=0, atol=1e-9)
        assert abs(a.energy - zero.energy) > 1e-3  # the adapter's change survives the conversion


@pytest.mark.skipif(cueq.available(), reason="cuequivariance-torch is installed")
def test_missing_package_is_a_clear_error():
    with pytest.raises(cueq.CueqUnavailable, match=r"sparseft\[cueq\]"):
        cueq.to_cueq(tiny_mace())
