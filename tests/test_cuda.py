"""CUDA paths: device choice, training, adapters, merging, the calculator and 2-GPU DDP.
The CUDA tests skip without a GPU; ``benchmarks/gpu_check.sh`` runs them on a GPU machine."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase.build import bulk

import sparseft as sf
from sparseft._compat import torch
from sparseft.devices import resolve_device
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames, recipe_text

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_device_names():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            resolve_device("cuda:0")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cuda")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    ase.io.write(d / "data.xyz", emt_frames(12))
    return d


def _recipe(workdir, name, device, **train):
    path = workdir / f"{name}.yaml"
    text = recipe_text("tiny.model", "data.xyz", name, epochs=3, batch_size=3, target_density=0.3, **train)
    path.write_text(text.replace("base:\n", f"base:\n  device: {device}\n"))
    return path


@cuda
def test_auto_trains_on_the_gpu_and_matches_the_cpu(workdir):
    gpu = run(load_recipe(_recipe(workdir, "gpu", "auto")), quiet=True)
    cpu = run(load_recipe(_recipe(workdir, "cpu", "cpu")), quiet=True)
    assert gpu["changed_parameters"] == cpu["changed_parameters"]
    # float64; GPU scatter sums are not bitwise reproducible, so a loose tolerance
    assert abs(gpu["splits"]["test"]["forces_mae"] - cpu["splits"]["test"]["forces_mae"]) < 1e-6
    base = sf.load_model(workdir / "tiny.model", device="cuda")
    adapted = sf.load_adapter(base, workdir / "gpu" / "adapter")  # adapter written from GPU tensors
    assert next(adapted.parameters()).is_cuda
    assert next(adapted.merge().parameters()).is_cuda


@cuda
def test_calculator_on_cuda_matches_cpu(workdir):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    values = {}
    for device in ("cpu", "cuda"):
        a = atoms.copy()
        a.calc = sf.Calculator(str(workdir / "tiny.model"), device=device)
        values[device] = (a.get_potential_energy(), a.get_forces())
    assert abs(values["cpu"][0] - values["cuda"][0]) < 1e-8
    np.testing.assert_allclose(values["cuda"][1], values["cpu"][1], atol=1e-8)


@cuda
def test_training_step_keeps_tensors_on_the_gpu(workdir):
    from sparseft.data import Keys, attach_labels, read_frames, to_atomic_data
    from sparseft.recipe import TrainSection
    from sparseft.train.trainer import Trainer

    base = sf.load_model(workdir / "tiny.model", device="cuda")
    adapted = sf.wrap(base, [sf.SparseConfig()])
    keys = Keys("REF_energy", "REF_forces", "REF_stress", None)
    frames = attach_labels(read_frames(str(workdir / "data.xyz")), keys, use_calculator=False)
    data = to_atomic_data(frames, adapted, keys)
    trainer = Trainer(adapted, data, [], TrainSection(epochs=1, batch_size=4), device="cuda", compute_stress=False)
    state = trainer.fit()
    assert state.step == 3 and all(p.is_cuda for p in trainer.params)
    assert all(
        v.is_cuda for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()
    )


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_with_nccl_train_the_one_gpu_adapter(workdir):
    from .train.test_distributed import _adapter, _finish, _torchrun

    run(load_recipe(_recipe(workdir, "one_gpu", "cuda")), quiet=True)
    out = _finish(_torchrun(workdir, _recipe(workdir, "two_gpu", "cuda")))
    assert "data-parallel: 2 ranks (nccl)" in out
    one, two = _adapter(workdir / "one_gpu"), _adapter(workdir / "two_gpu")
    assert one.keys() == two.keys()
    for key in one:
        x, y = one[key].double(), two[key].double()
        assert float((x - y).norm()) <= 1e-5 * max(float(x.norm()), 1e-30), key
    assert json.loads((workdir / "two_gpu" / "metrics.json").read_text())["steps"] == 9
