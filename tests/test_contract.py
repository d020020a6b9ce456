"""The contract every adapter method meets, run as one table over methods, models and dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.adapters import METHODS
from sparseft.adapters.sparse_modes import MODES as SPARSE_MODES
from sparseft.adapters.sparse_modes import SparseSchedule
from sparseft.blocks import blocks
from sparseft.fingerprint import canonical_structure
from sparseft.heads import HeadedModel, build_head, split_heads
from sparseft.predict import atoms_to_batch, predict
from sparseft.testing.equivariance import check_equivariance
from sparseft.testing.structures import default_structures

# The table is generated from the registry: each method alone with its default options on the
# last interaction layer (sparse: l1 > 0, so training runs the proximal step), plus mixes. A
# "headed" case puts heads of every kind on a mixed adapter.
CONFIGS = {name: (lambda cls=cls: [cls(select=sf.Selector(layers=[1]))]) for name, cls in METHODS.items()}
CONFIGS["mixed"] = lambda: [
    sf.SparseConfig(select=sf.Selector(kinds=["skip", "contraction"])),
    sf.LoRAConfig(select=sf.Selector(kinds=["linear"]), rank=2),
    sf.FreezeConfig(select=sf.Selector(kinds=["readout"])),
]
CONFIGS["headed"] = CONFIGS["mixed"]
# every sparse mode (from its registry), in the state its training puts its parts in (see _prepare):
# learnable thresholds in use (str, str_scheduled), a support fixed up front with only its values as
# parameters (fisher, compacted), a per-block allocation (gradual)
SELECTED = sf.Selector(kinds=["skip", "contraction", "linear"])
for _mode in SPARSE_MODES:
    CONFIGS[f"sparse-{_mode}"] = lambda mode=_mode: [
        sf.SparseConfig(select=SELECTED, mode=mode, allocation="per_block" if mode == "gradual" else "global")
    ]
HEAD_KINDS = ("energy", "magmom", "vector_magmom")
CASES = [
    (m, f, d)
    for m in CONFIGS
    for f in ("scalar", "l1")
    for d in ("float64", "float32")
    if not (m == "headed" and f == "scalar")
]  # a vector head needs 1o features
IDS = [f"{m}-{f}-{d}" for m, f, d in CASES]
RTOL = {"float64": 1e-10, "float32": 1e-5}


def _build(base, method):
    """The adapted model of one case: ``wrap`` of its configs, with heads for "headed"."""
    adapted = _prepare(sf.wrap(base, CONFIGS[method]()), method)
    if method != "headed":
        return adapted
    return HeadedModel(
        adapted, [build_head(f"h_{k}", k, {"hidden": 4}, adapted.base, seed=i) for i, k in enumerate(HEAD_KINDS)]
    )


def _prepare(adapted, method):
    """The state a sparse mode's training puts its parts in (see CONFIGS)."""
    for i, part in enumerate(adapted.prunable_parts()):
        if method == "sparse-str_scheduled":
            part.offset.fill_(math.log(0.003))  # thresholds ~0.003: random deltas of scale 0.05 lose ~5 %
        elif method == "sparse-str":
            with torch.no_grad():  # sigmoid(s) = 1e-5: below the N(0, 1e-4) start of training's prepare
                part.s.fill_(math.log(1e-5 / (1 - 1e-5)))
        elif method == "sparse-fisher":
            keep = torch.zeros(part.index.numel(), dtype=torch.bool)
            keep[i % 3 :: 3] = True
            part.compact(keep)
    return adapted


def _trunk(model):
    return split_heads(model)[0]


def test_the_table_covers_every_registered_method():
    assert set(METHODS) <= set(CONFIGS)
    assert {f"sparse-{mode}" for mode in SPARSE_MODES} <= set(CONFIGS)
    assert any(isinstance(c, sf.SparseConfig) and c.l1 > 0 for c in CONFIGS["sparse"]())


def _randomize(adapted, scale=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            if p.dim() == 0:  # a threshold (str: one per part) keeps the value _prepare gave it
                continue
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p) * scale)


def _rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(float(np.abs(np.asarray(b)).max()), 1.0))


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_zero_delta_is_bit_identical(make_model, one_thread, method, features, dtype):
    base = make_model(features, dtype)
    structures = default_structures(base)
    predict(base, structures)  # warm-up: the very first call may round differently (lazy kernel set-up)
    before = predict(base, structures)
    after = predict(_build(base, method), structures)
    for x, y in zip(before, after):
        assert x.energy == y.energy
        assert np.array_equal(x.forces, y.forces)
        assert (x.stress is None and y.stress is None) or np.array_equal(x.stress, y.stress)


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_only_selected_blocks_train(make_model, method, features, dtype):
    base = make_model(features, dtype)
    adapted = _build(base, method)
    trainable = {id(p) for p in adapted.trainable_parameters()}
    assert trainable, "an adapter must have trainable parameters"
    for p in adapted.parameters():
        assert p.requires_grad == (id(p) in trainable)
    _randomize(adapted)
    merged = _trunk(adapted).merge()
    selected = {b.name for _, _, part in _trunk(adapted).all_parts() for b in part.blocks}
    base_params = dict(base.named_parameters())
    changed_outside = []
    for b in blocks(merged):
        idx = b.indices()
        old = base_params[b.param].detach().reshape(-1)[idx]
        new = dict(merged.named_parameters())[b.param].detach().reshape(-1)[idx]
        if b.name not in selected and not torch.equal(old, new):
            changed_outside.append(b.name)
    assert not changed_outside
    assert any(not torch.equal(base_params[n].detach(), p.detach()) for n, p in merged.named_parameters()), (
        "random deltas must change the merged weights"
    )


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_random_deltas_stay_equivariant(make_model, method, features, dtype):
    adapted = _build(make_model(features, dtype), method)
    _randomize(adapted, scale=0.2)
    report = check_equivariance(adapted)
    assert report.passed, report.format_table()


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_merged_equals_adapted(make_model, method, features, dtype):
    base = make_model(features, dtype)
    adapted = _build(base, method)
    _randomize(adapted)
    merged = adapted.merge()
    assert type(_trunk(merged)) is type(base)
    structures = default_structures(base)
    for x, y, z in zip(predict(adapted, structures), predict(merged, structures), predict(base, structures)):
        assert _rel(y.energy, x.energy) <= RTOL[dtype]
        assert _rel(y.forces, x.forces) <= RTOL[dtype]
        for name, values in x.heads.items():
            for key, value in values.items():
                assert _rel(y.heads[name][key], value) <= RTOL[dtype]
        change = np.abs(z.forces - x.forces).max() / np.abs(x.forces).max()
        assert change > 100 * RTOL[dtype], "the adapter should change the predictions"


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_save_load_round_trip(make_model, tmp_path, one_thread, method, features, dtype):
    base = make_model(features, dtype)
    adapted = _build(base, method)
    _randomize(adapted)
    for part in _trunk(adapted).prunable_parts():  # exact zeros must survive the sparse format
        part.proximal_step(lr=1.0, l1=0.03)
    sf.save_adapter(adapted, tmp_path / "adapter")
    loaded = sf.load_adapter(base, tmp_path / "adapter")
    s = [canonical_structure(base)]
    predict(adapted, s)  # warm-up, as above
    x, y = predict(adapted, s)[0], predict(loaded, s)[0]
    assert x.energy == y.energy and np.array_equal(x.forces, y.forces)
    for name, values in x.heads.items():
        for key, value in values.items():
            assert np.array_equal(np.asarray(y.heads[name][key]), np.asarray(value))
    assert _trunk(loaded).density()["changed"] == _trunk(adapted).density()["changed"]


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_wrong_base_is_refused(make_model, tmp_path, method, features, dtype):
    base = make_model(features, dtype)
    adapted = _build(base, method)
    sf.save_adapter(adapted, tmp_path / "adapter")
    other = make_model(features, dtype)
    with torch.no_grad():
        other.interactions[0].linear.weight.add_(0.01)
    with pytest.raises(sf.AdapterFileError, match="another base model.*interactions.0.linear.weight"):
        sf.load_adapter(other, tmp_path / "adapter")


def _teacher_targets(base, structures):
    teacher = sf.wrap(base, [sf.FreezeConfig()])
    _randomize(teacher, scale=0.05, seed=7)
    preds = predict(teacher, structures)
    return [torch.tensor(p.energy) for p in preds], [torch.tensor(p.forces) for p in preds]


def _loss(model, batch, energies, forces):
    out = model(dict(batch), training=True, compute_force=True, compute_stress=False)
    e = torch.stack(energies).to(out["energy"])
    f = torch.cat(forces).to(out["forces"])
    return ((out["energy"] - e) ** 2).mean() + ((out["forces"] - f) ** 2).mean()


@pytest.mark.parametrize("method,features,dtype", CASES, ids=IDS)
def test_a_few_steps_lower_the_loss(make_model, method, features, dtype):
    base = make_model(features, dtype)
    structures = default_structures(base)
    energies, forces = _teacher_targets(base, structures)
    adapted = _build(base, method)
    # what the trainer does before building the optimiser (str: the delta's random start)
    SparseSchedule(_trunk(adapted), 6, 0.5, 0.0).prepare([], None, 0)
    optimizer = torch.optim.Adam(adapted.trainable_parameters(), lr=1e-2)
    batch = atoms_to_batch(structures, adapted)
    first = None
    for _ in range(6):
        optimizer.zero_grad()
        loss = _loss(adapted, batch, energies, forces)
        first = loss.item() if first is None else first
        loss.backward()
        optimizer.step()
        _trunk(adapted).after_step(1e-2)
    assert _loss(adapted, batch, energies, forces).item() < 0.9 * first
