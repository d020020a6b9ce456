"""Method-specific behaviour: sparsity, masks, LoRA coverage, conflicts."""

from __future__ import annotations

import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.adapters import config_from_dict
from sparseft.select import SelectionError

ONE_PARAM = sf.Selector(include=["interactions.0.skip_tp.weight"])


def test_proximal_step_makes_exact_zeros(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(l1=1.0, select=ONE_PARAM)])
    (delta,) = adapted.trainable_parameters()
    with torch.no_grad():
        delta.copy_(torch.linspace(-1, 1, delta.numel(), dtype=delta.dtype))
    adapted.proximal_step(lr=0.5)
    values = delta.detach()
    assert int((values == 0).sum()) >= delta.numel() // 2 - 1
    assert float(values.abs().max()) == pytest.approx(0.5, abs=1e-12)
    assert adapted.density()["overall"] == pytest.approx(float((values != 0).float().mean()))


def test_fix_support_keeps_the_largest_entries_and_holds(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(l1=0.0, select=ONE_PARAM)])
    (delta,) = adapted.trainable_parameters()
    with torch.no_grad():
        delta.copy_(torch.randn(delta.numel(), dtype=delta.dtype, generator=torch.Generator().manual_seed(0)))
    top = set(torch.topk(delta.detach().abs(), 40).indices.tolist())
    kept = adapted.fix_support(density=40 / delta.numel())
    assert kept == 40
    assert adapted.density()["changed"] == 40
    assert set(torch.nonzero(delta.detach()).reshape(-1).tolist()) == top
    # training with the mask never grows the support
    opt = torch.optim.SGD(adapted.trainable_parameters(), lr=0.1)
    (sum(p.values().sum() for p in adapted.prunable_parts())).backward()
    opt.step()
    adapted.proximal_step(0.1)
    assert adapted.density()["changed"] == 40


def test_fix_support_by_threshold(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(select=ONE_PARAM)])
    (delta,) = adapted.trainable_parameters()
    with torch.no_grad():
        delta.copy_(torch.linspace(-1, 1, delta.numel(), dtype=delta.dtype))
    values = torch.linspace(-1, 1, delta.numel(), dtype=delta.dtype)
    adapted.fix_support(threshold=0.5)
    (part,) = adapted.prunable_parts()
    expected = values.abs() > 0.5  # computed here, not read back from the part
    assert torch.equal(part.mask.bool(), expected)
    assert torch.equal(part.values().detach(), torch.where(expected, values, torch.zeros_like(values)))
    assert adapted.density()["changed"] == int(expected.sum())


def test_density_per_block(make_model):
    adapted = sf.wrap(make_model(), [sf.SparseConfig(select=sf.Selector(kinds=["skip"], elements=["O"]))])
    per_block = adapted.density()["blocks"]
    assert per_block and all(v == 0.0 for v in per_block.values())
    assert all("Z=8" in name for name in per_block)


def test_lora_skips_vectors_and_refuses_contractions(make_model):
    adapted = sf.wrap(make_model(), [sf.LoRAConfig(rank=2)])
    kinds = {b.kind for _, _, part in adapted.all_parts() for b in part.blocks}
    assert "contraction" not in kinds and "embedding" not in kinds and "skip" in kinds
    with pytest.raises(SelectionError, match="contraction"):
        sf.wrap(make_model(), [sf.LoRAConfig(select=sf.Selector(kinds=["contraction"]))])


def test_lora_parameter_count_and_rank_cap(make_model):
    adapted = sf.wrap(make_model(), [sf.LoRAConfig(select=sf.Selector(kinds=["readout"]), rank=4)])
    # readouts: 8x1 (rank 1), 8x8 (rank 4), 8x1 (rank 1)
    assert adapted.num_trainable() == (8 + 1) + (32 + 32) + (8 + 1)


def test_two_adapters_on_one_block_is_an_error(make_model):
    with pytest.raises(sf.AdapterConflictError, match="both claim"):
        sf.wrap(
            make_model(),
            [sf.SparseConfig(select=sf.Selector(kinds=["skip"])), sf.FreezeConfig(select=sf.Selector(layers=[0]))],
        )


def test_two_adapters_on_one_parameter_but_different_elements(make_model):
    adapted = sf.wrap(
        make_model(),
        [
            sf.SparseConfig(select=sf.Selector(kinds=["skip"], elements=["H"])),
            sf.LoRAConfig(select=sf.Selector(kinds=["skip"], elements=["O"]), rank=2),
        ],
    )
    params = {p for _, p, _ in adapted.all_parts()}
    assert "interactions.0.skip_tp.weight" in params


def test_wrap_does_not_touch_the_users_model(make_model):
    base = make_model()
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    adapted = sf.wrap(base, [sf.FreezeConfig()])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.add_(1.0)
    assert all(torch.equal(before[n], p) for n, p in base.named_parameters())
    assert all(p.requires_grad for p in base.parameters())


def test_config_from_dict_errors():
    with pytest.raises(ValueError, match="unknown method 'sprase'"):
        config_from_dict({"method": "sprase"}, "adapters[0]")
    with pytest.raises(ValueError, match=r"adapters\[1\]: unknown key\(s\) \['rnak'\]"):
        config_from_dict({"method": "lora", "rnak": 4}, "adapters[1]")
    cfg = config_from_dict({"method": "lora", "rank": 8, "select": {"kinds": ["linear"]}})
    assert cfg == sf.LoRAConfig(rank=8, select=sf.Selector(kinds=["linear"]))


def test_fixed_support_survives_save_and_load(make_model, tmp_path):
    base = make_model()
    adapted = sf.wrap(base, [sf.SparseConfig(l1=0.0, select=ONE_PARAM)])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_()
    adapted.fix_support(density=0.1)
    sf.save_adapter(adapted, tmp_path / "ad")
    loaded = sf.load_adapter(base, tmp_path / "ad")
    (part,) = loaded.prunable_parts()
    assert part.mask is not None
    assert torch.equal(part.mask, adapted.prunable_parts()[0].mask)


# --- rosa: sparse + low-rank in one adapter


def test_rosa_sums_a_low_rank_and_a_sparse_delta_on_the_same_blocks(make_model, tmp_path):
    base = make_model()
    adapted = sf.wrap(base, [sf.RoSAConfig(select=sf.Selector(kinds=["linear"]), rank=2)])
    (part, *_) = adapted.prunable_parts()
    assert len(part.A) == len(part.blocks) and all(a.shape[1] <= 2 for a in part.A)
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    low_rank = part.low_rank().detach()
    assert torch.allclose(part.values().detach(), part.delta.detach() + low_rank)
    adapted.fix_support(density=0.1)  # cuts the sparse term only: the low-rank term stays dense
    parts = adapted.prunable_parts()
    kept = sum(int(p.sparse_values().detach().ne(0).sum()) for p in parts)
    assert kept == round(0.1 * sum(p.delta.numel() for p in parts))
    assert torch.equal(part.low_rank().detach(), low_rank)
    sf.save_adapter(adapted, tmp_path / "adapter")
    loaded = sf.load_adapter(base, tmp_path / "adapter")
    (other, *_) = loaded.prunable_parts()
    assert torch.equal(other.values().detach(), part.values().detach())
    assert torch.equal(other.mask, part.mask)


def test_rosa_options_are_validated():
    with pytest.raises(ValueError, match="rosa.mode: 'str' is not one of two_phase, gradual, fisher"):
        sf.RoSAConfig(mode="str")
    config = config_from_dict({"method": "rosa", "rank": 3, "mode": "fisher"})
    assert isinstance(config, sf.RoSAConfig) and config.rank == 3
    with pytest.raises(ValueError, match="rank"):
        config_from_dict({"method": "rosa", "rank": 0})


def test_rosa_trains_to_the_target_density_with_its_low_rank_term(tmp_path):
    import ase.io

    from sparseft.recipe import load_recipe
    from sparseft.run import run
    from sparseft.testing.tiny import tiny_mace

    from .finetune_data import emt_frames

    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), tmp_path / "tiny.model")
    ase.io.write(tmp_path / "data.xyz", emt_frames(12, stress=False))
    (tmp_path / "rosa.yaml").write_text("""
base: {model: tiny.model, dtype: float64}
data: {train: data.xyz, valid_fraction: 0.25, E0s: estimated}
adapters:
  - {method: rosa, rank: 1, select: {kinds: [linear, skip]}}
train: {epochs: 3, batch_size: 3, lr: 0.01, target_density: 0.05}
output: {directory: out}
""")
    m = run(load_recipe(tmp_path / "rosa.yaml"), quiet=True)
    base = sf.load_model(tmp_path / "tiny.model", dtype="float64")
    loaded = sf.load_adapter(base, tmp_path / "out" / "adapter")
    parts = loaded.prunable_parts()
    sparse = sum(int(p.mask.sum()) for p in parts)
    assert sparse == round(0.05 * sum(p.delta.numel() for p in parts)), "the sparse term meets the target"
    assert any(float(b.detach().abs().sum()) > 0 for p in parts for b in p.B), "the low-rank term trained"
    merged = torch.load(tmp_path / "out" / "merged.model", weights_only=False)
    from sparseft.predict import predict
    from sparseft.testing.structures import default_structures

    s = default_structures(base)
    for x, y in zip(predict(loaded, s), predict(merged, s)):
        assert abs(x.energy - y.energy) <= 1e-10 * max(1.0, abs(x.energy))
    assert m["trainable_parameters"] < m["selected_parameters"]
