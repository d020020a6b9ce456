"""The backend contract as test classes: subclass :class:`BackendContract` for a backend.

A subclass provides two fixtures, ``base`` (a plain base model of the backend, float32,
loaded once per module) and ``structures`` (a few small structures of its elements), and
inherits the tests: load and predict, the weight inventory, every adapter method (zero delta
= base, exact merge, adapter file round trip, a different base refused), energy and
magnetic-moment heads,
equivariance in float64 under random deltas (the backend's symmetry), and training steps
that lower the loss. Tests use copies; the fixtures are never changed.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

import sparseft as sf

from .._compat import torch
from ..blocks import KINDS, blocks
from ..core.backend import backend_of
from ..heads import HeadedModel, build_head
from ..predict import atoms_to_batch, predict
from .equivariance import check_equivariance

if False:  # typing only
    from pathlib import Path  # noqa: F401

METHODS = {
    "sparse": lambda: [sf.SparseConfig(l1=0.1)],
    "lora": lambda: [sf.LoRAConfig(rank=2)],
    "rosa": lambda: [sf.RoSAConfig(rank=2)],
    "sparse_str": lambda: [sf.SparseConfig(mode="str")],
    "full": lambda: [sf.FreezeConfig()],
    "freeze_readout": lambda: [sf.FreezeConfig(select=sf.Selector(kinds=["readout"]))],
    "mixed": lambda: [
        sf.SparseConfig(select=sf.Selector(kinds=["skip", "embedding", "radial"])),
        sf.LoRAConfig(select=sf.Selector(kinds=["linear", "linear_up"]), rank=2),
        sf.FreezeConfig(select=sf.Selector(kinds=["readout"])),
    ],
}


def randomize(adapted, scale: float = 1e-2, seed: int = 0) -> None:
    """Random deltas on every trainable parameter (a sparse pattern for sparse parts)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            if p.dim() == 0:  # a threshold (sparse mode str) keeps its start
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=p.dtype) * scale
            p.add_(noise.to(p.device))


class BackendContract:
    """Tests every backend passes; subclasses provide the ``base`` and ``structures`` fixtures."""

    rotation_tolerance_float64 = 1e-10

    def test_loads_and_predicts(self, base, structures):
        out = predict(base, structures)
        assert len(out) == len(structures)
        for atoms, p in zip(structures, out):
            assert np.isfinite(p.energy) and p.forces.shape == (len(atoms), 3)
        assert backend_of(base).symmetry in ("O(3)", "SO(3)")

    def test_inventory_covers_every_weight_once(self, base):
        found = blocks(base)
        assert {b.kind for b in found} <= set(KINDS)
        params = dict(base.named_parameters())
        covered = {name: 0 for name in params}
        for b in found:
            covered[b.param] += b.size
        assert covered == {n: p.numel() for n, p in params.items()}
        assert all(b.kind != "other" for b in found), [b.name for b in found if b.kind == "other"][:3]

    @pytest.mark.parametrize("method", list(METHODS))
    def test_zero_delta_is_the_base_and_merge_is_exact(self, base, structures, method):
        adapted = sf.wrap(base, METHODS[method]())
        before = predict(base, structures)
        for a, b in zip(predict(adapted, structures), before):
            assert a.energy == b.energy and np.array_equal(a.forces, b.forces)
        randomize(adapted)
        changed = predict(adapted, structures)
        assert any(abs(c.energy - b.energy) > 1e-6 for c, b in zip(changed, before))
        merged = adapted.merge()
        assert type(merged) is type(base)
        for a, m in zip(changed, predict(merged, structures)):
            assert a.energy == pytest.approx(m.energy, abs=1e-4)
            np.testing.assert_allclose(a.forces, m.forces, atol=1e-4)

    @pytest.mark.parametrize("method", ["sparse", "lora", "mixed"])
    def test_adapter_file_round_trip_and_wrong_base(self, base, structures, method, tmp_path):
        adapted = sf.wrap(base, METHODS[method]())
        randomize(adapted, seed=1)
        sf.save_adapter(adapted, tmp_path / "adapter")
        back = sf.load_adapter(base, tmp_path / "adapter")
        for a, b in zip(predict(adapted, structures), predict(back, structures)):
            assert a.energy == b.energy and np.array_equal(a.forces, b.forces)
        other = copy.deepcopy(base)
        with torch.no_grad():
            next(p for p in other.parameters() if p.numel() > 1).mul_(1.01)
        with pytest.raises(ValueError, match="differ"):
            sf.load_adapter(other, tmp_path / "adapter")

    def test_merged_file_is_the_family_file(self, base, structures, tmp_path):
        adapted = sf.wrap(base, METHODS["sparse"]())
        randomize(adapted, seed=2)
        merged = adapted.merge()
        backend = backend_of(merged)
        path = tmp_path / backend.merged_file
        backend.save_merged(merged, path)
        loaded = sf.load_model(path)
        for a, b in zip(predict(adapted, structures), predict(loaded, structures)):
            assert a.energy == pytest.approx(b.energy, abs=1e-4)
            np.testing.assert_allclose(a.forces, b.forces, atol=1e-4)

    def test_magmom_head_trains_on_the_trunk(self, base, structures):
        head = build_head("spin", "magmom", {}, base)
        headed = HeadedModel(sf.wrap(base, METHODS["sparse"]()), [head])
        batch = atoms_to_batch(structures[:1], headed)
        out = headed(batch, training=True, compute_force=False)
        moments = out["heads"]["spin"]["magmoms"]
        assert moments.shape[0] == len(structures[0])
        (moments - 1.0).square().sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    def test_energy_head_starts_as_the_foundation_and_trains(self, base, structures):
        head = build_head("dft", "energy", {}, base)
        headed = HeadedModel(sf.wrap(base, METHODS["sparse"]()), [head])
        batch = atoms_to_batch(structures[:1], headed)
        out = headed(batch, training=True, compute_force=True)
        torch.testing.assert_close(out["heads"]["dft"]["energy"], out["energy"], rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(out["heads"]["dft"]["forces"], out["forces"], rtol=1e-5, atol=1e-5)
        (out["heads"]["dft"]["energy"] - 1.0).square().sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())

    def test_equivariance_float64_with_random_deltas(self, base, structures):
        model = backend_of(base).to_dtype(copy.deepcopy(base), torch.float64)
        adapted = sf.wrap(model, METHODS["mixed"]())
        randomize(adapted, seed=3)
        report = check_equivariance(adapted, structures[:1], n_rotations=1, supercell=(1, 1, 1))
        assert report.passed, report
        assert report.row("rotation", "forces").max_error < self.rotation_tolerance_float64
        if backend_of(base).symmetry == "SO(3)":
            assert ("inversion", "energy") in report.not_applicable()
        else:
            assert not report.not_applicable()

    def test_training_steps_lower_the_loss(self, base, structures):
        adapted = sf.wrap(base, METHODS["sparse"]())
        batch = atoms_to_batch(structures[:1], adapted)
        target = (batch["positions"] * 0.0).detach()
        optimizer = torch.optim.Adam(adapted.trainable_parameters(), lr=1e-3)
        losses = []
        for _ in range(3):
            out = adapted(dict(batch), training=True, compute_force=True)
            loss = (out["forces"] - target).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        assert losses[-1] < losses[0]


def labelled_frames(base, structures, n: int = 6, seed: int = 0) -> list:
    """``n`` rattled copies of ``structures`` labelled by ``base`` itself, shifted (energy +0.05
    eV/atom, forces x1.1): a small "new level of theory" any backend can learn."""
    import ase

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = structures[i % len(structures)].copy()
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        frames.append(atoms)
    for atoms, p in zip(frames, predict(base, frames, stress=False)):
        atoms.info["REF_energy"] = p.energy + 0.05 * len(atoms)
        atoms.arrays["REF_forces"] = p.forces * 1.1
        atoms.calc = None
    assert all(isinstance(a, ase.Atoms) for a in frames)
    return frames


def _recipe(folder, base_name: str, name: str, **train) -> "Path":
    import yaml

    recipe = {
        "base": {"model": base_name, "dtype": "float64", "device": "cpu"},
        "data": {"train": str(folder / "data.xyz"), "valid_fraction": 0.34, "test_fraction": 0.0},
        "adapters": [{"method": "sparse", "l1": 0.001}],
        "train": {"epochs": 2, "batch_size": 2, "lr": 0.01, "target_density": 0.2, "seed": 0, **train},
        "output": {"directory": str(folder / name)},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


class BackendRunContract:
    """Whole fine-tunes on a backend (slow): a resumed run equals an uninterrupted one, and two
    torchrun ranks train the one-rank adapter. Subclasses add a ``base_name`` fixture (what a
    recipe's ``base.model`` says) besides ``base`` and ``structures``."""

    @pytest.fixture
    def folder(self, base, structures, tmp_path):
        import ase.io

        ase.io.write(tmp_path / "data.xyz", labelled_frames(base, structures), format="extxyz")
        return tmp_path

    @pytest.mark.slow
    def test_resumed_run_equals_an_uninterrupted_one(self, folder, base_name):
        from safetensors.torch import load_file

        from ..recipe import load_recipe
        from ..run import run

        fixed = {"target_density": None, "scheduler": "constant"}  # a schedule that does not depend on the epochs
        run(load_recipe(_recipe(folder, base_name, "whole", **fixed)), quiet=True)
        path = _recipe(folder, base_name, "parts", epochs=1, **fixed)
        run(load_recipe(path), quiet=True)
        path = _recipe(folder, base_name, "parts", epochs=2, **fixed)
        run(load_recipe(path), quiet=True, resume=True, accept_recipe_changes=True)
        a = load_file(str(folder / "whole" / "adapter" / "adapter.safetensors"))
        b = load_file(str(folder / "parts" / "adapter" / "adapter.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-9, atol=1e-12, msg=key)

    @pytest.mark.slow
    def test_two_ranks_train_the_one_rank_adapter(self, folder, base_name):
        import os
        import subprocess
        import sys

        from safetensors.torch import load_file

        from ..recipe import load_recipe
        from ..run import run

        run(load_recipe(_recipe(folder, base_name, "one")), quiet=True)
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        cmd += ["-m", "sparseft", "finetune", str(_recipe(folder, base_name, "two")), "--quiet"]
        done = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        a = load_file(str(folder / "one" / "adapter" / "adapter.safetensors"))
        b = load_file(str(folder / "two" / "adapter" / "adapter.safetensors"))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key].double(), b[key].double(), rtol=1e-6, atol=1e-9, msg=key)
