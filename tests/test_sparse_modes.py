"""The sparse modes (two_phase, gradual, fisher, str_scheduled, str): schedule pieces, and each mode trained end to end
meeting the adapter contract (target density, merge exact, files round-trip, equivariance, only
selected blocks change, a meaningful sparsity map)."""

from __future__ import annotations

import json
import math
import re

import ase.io
import numpy as np
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.adapters.ranking import keep_top
from sparseft.adapters.sparse import ThresholdPart
from sparseft.adapters.sparse_modes import MODES as REGISTRY
from sparseft.adapters.sparse_modes import cubic_density, set_offsets
from sparseft.predict import predict
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing.equivariance import check_equivariance
from sparseft.testing.structures import default_structures
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames

ONE_PARAM = sf.Selector(include=["interactions.0.skip_tp.weight"])
MODES = ("two_phase", "gradual", "fisher", "str_scheduled")  # the modes that fix a support at the target


def test_cubic_schedule_runs_from_dense_to_the_target():
    assert cubic_density(0, 10, 110, 0.03) == 1.0
    assert cubic_density(110, 10, 110, 0.03) == pytest.approx(0.03)
    values = [cubic_density(s, 10, 110, 0.03) for s in range(10, 111, 10)]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert cubic_density(60, 10, 110, 0.03) == pytest.approx(0.03 + 0.97 * 0.125)


def test_keep_top_keeps_exactly_k_across_parts_and_breaks_ties_by_position():
    scores = [torch.tensor([3.0, 1.0, 1.0]), torch.tensor([1.0, 5.0])]
    keep = keep_top(scores, 0.4)
    assert [k.tolist() for k in keep] == [[True, False, False], [False, True]]
    # three-way tie for the last slot: the earliest position wins, whatever the length of the tie
    keep = keep_top([torch.tensor([1.0, 1.0, 1.0, 2.0])], 0.5)
    assert keep[0].tolist() == [True, False, False, True]
    ties = torch.zeros(10_001)  # long ties are where torch's unstable sorts pick arbitrary entries
    (keep,) = keep_top([ties], 0.3)
    assert int(keep.sum()) == 3000 and bool(keep[:3000].all())


def test_keep_top_counts_round_density_n_at_least_one_and_ranks_excluded_last():
    scores = [torch.arange(7.0)]
    assert int(keep_top(scores, 0.5)[0].sum()) == 4  # round(3.5) = 4
    assert int(keep_top(scores, 1e-6)[0].sum()) == 1
    (keep,) = keep_top([torch.tensor([float("-inf"), float("nan"), 0.0, -5.0])], 0.5)
    assert keep.tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="density must be in"):
        keep_top(scores, 0.0)


def test_per_block_allocation_gives_every_block_its_share():
    # one large block of big scores and one small block (a "readout") of small ones
    big, small = torch.linspace(10, 20, 90), torch.linspace(0, 1, 10)
    groups = [torch.tensor([0] * 90 + [1] * 10)]
    (glob,) = keep_top([torch.cat([big, small])], 0.1)
    assert int(glob[90:].sum()) == 0, "one global top-k starves the small block"
    (per,) = keep_top([torch.cat([big, small])], 0.1, groups=groups, allocation="per_block")
    assert int(per.sum()) == 10 and int(per[90:].sum()) == 1 and int(per[:90].sum()) == 9
    assert bool(per[99]) and bool(per[89]), "each block keeps its own best entries"
    # at least one entry per block, even when the share rounds to zero
    (per,) = keep_top(
        [torch.cat([big, small[:2]])], 0.05, groups=[torch.tensor([0] * 90 + [1] * 2)], allocation="per_block"
    )
    assert int(per.sum()) == 5 and int(per[90:].sum()) == 1


def test_allocation_is_validated_in_one_line():
    with pytest.raises(ValueError, match=r"sparse.allocation: 'foo' is not one of global, per_block"):
        sf.SparseConfig(allocation="foo")
    with pytest.raises(
        ValueError, match=r"sparse.mode: 'nope' is not one of two_phase, gradual, fisher, str, str_scheduled"
    ):
        sf.SparseConfig(mode="nope")


def test_fix_support_uses_the_adapters_allocation(make_model):
    for allocation in ("global", "per_block"):
        adapted = sf.wrap(make_model(), [sf.SparseConfig(allocation=allocation)])
        parts = adapted.prunable_parts()
        big = max(range(len(parts)), key=lambda i: parts[i].delta.numel())
        with torch.no_grad():
            for i, part in enumerate(parts):  # the largest part's entries dominate every other
                part.delta.copy_(torch.rand(part.delta.shape, dtype=part.delta.dtype) + (100.0 if i == big else 0.0))
        n = sum(p.delta.numel() for p in parts)
        density = 0.5 * parts[big].delta.numel() / n  # less than the largest part holds
        kept = adapted.fix_support(density=density)
        assert kept == max(1, round(density * n)) > sum(len(p.blocks) for p in parts)
        blocks_kept = [int(p.mask[s:e].sum()) for i, p in enumerate(parts) if i != big for _, s, e in p.block_slices()]
        if allocation == "global":
            assert all(k == 0 for k in blocks_kept)
        else:
            assert all(k >= 1 for k in blocks_kept), "per_block: no block is starved"


def test_the_trainer_names_no_sparse_mode():
    import inspect

    import sparseft.train.trainer as trainer

    source = inspect.getsource(trainer)
    for name in REGISTRY:  # by value, and (but "str", a type) as a word
        assert f'"{name}"' not in source and f"'{name}'" not in source, name
        assert name == "str" or not re.search(rf"\b{name}\b", source), name
    for internal in ("uses(", "ThresholdPart", "fisher_frames", "resets_optimizer", "threshold_lr_scale"):
        assert internal not in source, internal


def test_the_table_below_covers_every_registered_mode():
    assert set(REGISTRY) == {*MODES, "str"}


def test_threshold_part_has_exact_zeros_and_straight_through_gradients(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(select=ONE_PARAM, mode="str_scheduled")])
    (part,) = adapted.prunable_parts()
    assert isinstance(part, ThresholdPart)
    assert torch.equal(part.values(), torch.zeros_like(part.values()))
    with torch.no_grad():
        part.delta.copy_(torch.linspace(-1, 1, part.delta.numel(), dtype=part.delta.dtype))
    set_offsets([part], 0.25)
    values = part.values()
    assert int((values.detach() != 0).sum()) == pytest.approx(0.25 * values.numel(), abs=2)
    (values * torch.ones_like(values)).sum().backward()
    assert bool((part.delta.grad != 0).all()), "entries below the threshold must still get a gradient"
    assert part.s.grad is not None and float(part.s.grad.abs().sum()) > 0


def test_compacted_part_holds_only_the_support(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(select=ONE_PARAM, mode="fisher")])
    (part,) = adapted.prunable_parts()
    n = part.index.numel()
    keep = torch.zeros(n, dtype=torch.bool)
    keep[::5] = True
    part.compact(keep)
    assert adapted.trainable_parameters()[0].numel() == int(keep.sum())
    with torch.no_grad():
        part.delta.fill_(0.1)
    assert torch.equal(part.values() != 0, keep)


def test_modes_that_fix_a_support_by_schedule_need_a_target(tmp_path):
    work = _workdir(tmp_path)
    with pytest.raises(ValueError, match="mode 'gradual' needs train.target_density"):
        _run(work, "gradual", target_density="null")


def _workdir(path):
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), path / "tiny.model")
    ase.io.write(path / "data.xyz", emt_frames(16, stress=False))
    return path


def _run(work, mode, adapter: str = "", **train):
    settings = {"epochs": 5, "batch_size": 4, "lr": 0.01, "target_density": 0.05, "scheduler": "cosine", **train}
    lines = "\n".join(f"  {k}: {v}" for k, v in settings.items())
    recipe = work / f"{mode}.yaml"
    recipe.write_text(f"""
base: {{model: tiny.model, dtype: float64}}
data: {{train: data.xyz, valid_fraction: 0.25, E0s: estimated}}
adapters:
  - {{method: sparse, mode: {mode}, select: {{kinds: [skip, contraction, linear]}}, fisher_frames: 8{adapter}}}
train:
{lines}
output: {{directory: out-{mode}}}
""")
    return run(load_recipe(recipe), quiet=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("modes"))
    return work, {mode: _run(work, mode) for mode in MODES}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_meets_the_target_density_and_the_contract(trained, mode):
    work, metrics = trained
    m = metrics[mode]
    target = round(0.05 * m["selected_parameters"])
    assert 0 < m["changed_parameters"] <= target
    assert m["trainable_parameters"] == target, "parameters and optimiser state only over the support"
    _check_contract(work, mode, m)


def _check_contract(work, mode, m):
    """Adapter file and merged model agree, training changed the model, equivariance, only selected
    blocks changed, the sparsity map accounts for every changed weight."""
    out = work / f"out-{mode}"
    rows = json.loads((out / "sparsity.json").read_text())
    base = sf.load_model(work / "tiny.model", dtype="float64")
    loaded = sf.load_adapter(base, out / "adapter")
    assert loaded.density()["changed"] == m["changed_parameters"]
    merged = torch.load(out / "merged.model", weights_only=False)
    structures = default_structures(base)
    for x, y, z in zip(predict(loaded, structures), predict(merged, structures), predict(base, structures)):
        assert abs(x.energy - y.energy) <= 1e-10 * max(1.0, abs(x.energy))
        assert np.abs(x.forces - y.forces).max() <= 1e-10 * max(1.0, np.abs(x.forces).max())
        assert np.abs(x.forces - z.forces).max() > 1e-8, "training must change the model"
    report = check_equivariance(loaded)
    assert report.passed, report.format_table()
    # only selected blocks changed, and the sparsity map accounts for every changed weight
    assert sum(r["changed"] for r in rows) == m["changed_parameters"]
    assert {r["kind"] for r in rows} <= {"skip", "contraction", "linear"}
    assert all(r["changed"] <= r["size"] for r in rows)
    changed_base = sum(
        int((p.detach() != q.detach()).sum())
        for (_, p), (_, q) in zip(base.named_parameters(), merged.named_parameters())
    )
    assert changed_base == m["changed_parameters"]


def test_str_scheduled_learns_different_densities_per_block(trained):
    work, _ = trained
    rows = json.loads((work / "out-str_scheduled" / "sparsity.json").read_text())
    densities = {r["block"]: r["changed"] / r["size"] for r in rows if r["size"] >= 16}
    assert len(set(round(d, 3) for d in densities.values())) > 3, "the thresholds must shape the allocation"


def test_best_weights_meet_the_target_and_regressions_are_reported(trained):
    _, metrics = trained
    for mode in MODES:
        check = metrics[mode]["zero_shot_check"]
        assert set(check) >= {"worse_than_zero_shot", "best_dense_phase"}
        assert isinstance(check["worse_than_zero_shot"], list)
        assert math.isfinite(metrics[mode]["best_epoch"])


# --- str: Cho et al.'s STR (learned per-layer sigmoid thresholds, no target, no fixed support)


@pytest.fixture(scope="module")
def trained_str(tmp_path_factory):
    work = _workdir(tmp_path_factory.mktemp("str"))
    # a threshold that grows into the deltas within the short run: sparsity must appear
    adapter = ", threshold_init: -6, threshold_scale: 0.1, threshold_weight_decay: 0.1, init_std: 0.001"
    return work, _run(work, "str", adapter=adapter, target_density="null", weight_decay=0.5)


def test_str_learns_its_own_density_and_meets_the_contract(trained_str):
    work, m = trained_str
    assert 0 < m["changed_parameters"] < 0.9 * m["selected_parameters"], "the thresholds must zero some entries"
    assert m["trainable_parameters"] > m["selected_parameters"], (
        "no fixed support: every delta and the thresholds train"
    )
    _check_contract(work, "str", m)
    rows = json.loads((work / "out-str" / "sparsity.json").read_text())
    assert any(r["changed"] < r["size"] for r in rows)


def _str_trainer(make_model, **options):
    from sparseft.data import Frames, Keys, to_atomic_data
    from sparseft.recipe import TrainSection
    from sparseft.train.trainer import Trainer

    adapted = sf.wrap(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), [sf.SparseConfig(select=ONE_PARAM, **options)])
    data = to_atomic_data(Frames("emt", emt_frames(8, stress=False), list(range(8))), adapted, Keys())
    config = TrainSection(epochs=2, batch_size=4, lr=0.01, weight_decay=0.3, target_density=None, seed=1)
    return adapted, Trainer(
        adapted, data[:6], data[6:], config, device="cpu", compute_stress=False, log=lambda _m: None
    )


def test_str_starts_from_small_noise_with_weight_decay_on_the_thresholds_only(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(select=ONE_PARAM, mode="str")])
    (part,) = adapted.prunable_parts()
    assert torch.equal(part.values(), torch.zeros_like(part.values())), "wrapped: exactly the base"
    adapted, trainer = _str_trainer(make_model, mode="str")
    (part,) = adapted.prunable_parts()
    assert float(part.delta.detach().std()) == pytest.approx(1e-4, rel=0.3)  # N(0, 1e-4) at the start
    assert float(part.threshold().detach()) == pytest.approx(1 / (1 + math.exp(12)))
    decay = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert decay[id(part.s)] == pytest.approx(1e-4) and decay[id(part.delta)] == 0.0, "train.weight_decay is 0.3"
    lr_scale = {id(p): g["lr_scale"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert lr_scale[id(part.s)] == 10.0
    s0 = float(part.s)
    trainer.fit()
    assert float(part.s) != s0, "the threshold is learned"
    assert not part.fixed and trainer.fix_at_step is None, "no fixed support, no retrain phase"


def test_str_needs_no_target_and_is_applied_to_linear_and_tensor_product_weights(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(mode="str")])
    kinds = {b.kind for p in adapted.prunable_parts() for b in p.blocks}
    assert kinds and kinds <= {"linear_up", "linear", "skip", "product_linear", "readout", "contraction"}
    assert "radial" not in kinds and "embedding" not in kinds
    with pytest.raises(sf.SelectionError, match="sparse mode 'str' covers the Linear and tensor-product weights"):
        sf.wrap(make_model(), [sf.SparseConfig(mode="str", select=sf.Selector(kinds=["radial"]))])


# --- two_phase: the search-phase options


def _two_phase_trainer(make_model, **options):
    from sparseft.data import Frames, Keys, to_atomic_data
    from sparseft.recipe import TrainSection
    from sparseft.train.trainer import Trainer

    adapted = sf.wrap(
        tiny_mace(atomic_numbers=(29, 79), r_max=4.5), [sf.SparseConfig(select=ONE_PARAM, l1=0.1, **options)]
    )
    data = to_atomic_data(Frames("emt", emt_frames(9, stress=False), list(range(9))), adapted, Keys())
    config = TrainSection(
        epochs=4, batch_size=3, lr=0.01, target_density=0.2, retrain_fraction=0.5, scheduler="constant", seed=1
    )
    return adapted, Trainer(
        adapted, data[:6], data[6:], config, device="cpu", compute_stress=False, log=lambda _m: None
    )


def test_two_phase_keeps_adams_moments_across_the_cut(make_model):
    adapted, trainer = _two_phase_trainer(make_model)
    assert trainer.total_steps == 8 and trainer.fix_at_step == 4
    trainer.fit()
    (part,) = adapted.prunable_parts()
    assert part.support is not None, "compacted at the fix step"
    state = trainer.optimizer.state[part.delta]
    assert int(state["step"]) == 8, "the moments count every step: they were not reset at the cut"
    assert int(part.delta.numel()) == round(0.2 * part.index.numel())


def test_search_lr_scale_applies_until_the_support_is_fixed(make_model):
    adapted, trainer = _two_phase_trainer(make_model, search_lr_scale=0.25)
    (part,) = adapted.prunable_parts()
    seen = []
    step = trainer._step

    def record(local, state):
        out = step(local, state)
        seen.append((state.step - 1, [g["lr"] for g in trainer.optimizer.param_groups if part.delta in g["params"]]))
        return out

    trainer._step = record
    trainer.fit()
    assert [lr for s, (lr,) in seen if s < 4] == [pytest.approx(0.0025)] * 4
    assert [lr for s, (lr,) in seen if s >= 4] == [pytest.approx(0.01)] * 4


def test_adam_proximal_step_is_preconditioned_by_the_second_moment(make_model):
    from sparseft.adapters.sparse_modes import OptimizerView, Plan
    from sparseft.adapters.sparse_modes.two_phase import TwoPhase

    config = sf.SparseConfig(select=ONE_PARAM, l1=0.5, proximal="adam")
    adapted = sf.wrap(make_model(), [config])
    (part,) = adapted.prunable_parts()
    assert part.l1 == 0.0, "no plain step besides the preconditioned one"
    n = part.delta.numel()
    with torch.no_grad():
        part.delta.fill_(1.0)
    denominator = torch.ones(n, dtype=part.delta.dtype)
    denominator[: n // 2] = 3.0  # mean 2: the first half shrinks by 2/3 of the plain step, the second by 2x

    class View(OptimizerView):
        def denominator(self, p):
            return denominator

    mode = TwoPhase(config, [part], Plan(10, 0.1, 5, 0, 1))
    mode.after_step(0, lr=0.1, penalty_scale=1.0, optim=View())
    plain = 0.1 * 0.5
    assert torch.allclose(part.delta[: n // 2], torch.full((n // 2,), 1 - plain * 2 / 3, dtype=part.delta.dtype))
    assert torch.allclose(part.delta[n // 2 :], torch.full((n - n // 2,), 1 - plain * 2, dtype=part.delta.dtype))


def test_str_loads_stored_values_exactly_with_or_without_a_fixed_support(make_model):
    """A file of the old scheduled ``str`` (now ``str_scheduled``) read as ``mode: str`` keeps its values."""
    old = sf.wrap(make_model(), [sf.SparseConfig(select=ONE_PARAM, mode="str_scheduled")])
    (part,) = old.prunable_parts()
    with torch.no_grad():
        part.delta.copy_(torch.linspace(-1e-3, 1e-3, part.delta.numel(), dtype=part.delta.dtype))
    for fixed in (False, True):
        if fixed:
            old.fix_support(density=0.5)
        tensors = part.state_tensors()
        new = sf.wrap(make_model(), [sf.SparseConfig(select=ONE_PARAM, mode="str")])
        (other,) = new.prunable_parts()
        other.load_state_tensors(tensors, "test")
        assert torch.equal(other.values().detach(), part.values().detach())
        assert ("fixed_support" in tensors) == fixed == other.fixed
