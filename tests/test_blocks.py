"""The weight catalogue covers every trainable weight of mace-torch models exactly once."""

from __future__ import annotations

import pytest

from sparseft._compat import o3, torch
from sparseft.blocks import KINDS, UnsupportedLayoutError, blocks, not_adaptable
from sparseft.testing.tiny import tiny_mace

INTERACTIONS = [
    "RealAgnosticInteractionBlock",
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticAttResidualInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
    "RealAgnosticResidualNonLinearInteractionBlock",
]


def _assert_exact_cover(model):
    found = blocks(model)
    counts = {n: torch.zeros(p.numel(), dtype=torch.int64) for n, p in model.named_parameters()}
    for b in found:
        counts[b.param][b.indices()] += 1
        assert b.kind in KINDS
    for name, c in counts.items():
        assert int(c.min()) == 1 and int(c.max()) == 1, name
    return found


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_every_interaction_class_is_covered_exactly_once(interaction):
    model = tiny_mace(interaction=interaction, first_interaction=interaction, hidden_irreps="4x0e+4x1o")
    found = _assert_exact_cover(model)
    assert "other" not in {b.kind for b in found} or interaction.endswith("NonLinearInteractionBlock")


@pytest.mark.parametrize(
    "options",
    [dict(heads=["a", "b"]), dict(correlation=3), dict(num_interactions=3), dict(hidden_irreps="4x0e+4x1o+4x2e")],
)
def test_model_options_are_covered(options):
    _assert_exact_cover(tiny_mace(**options))


def test_blocks_carry_layer_kind_irreps_and_element():
    found = blocks(tiny_mace())
    skip = [b for b in found if b.kind == "skip" and b.layer == 0]
    assert {b.element for b in skip} == {1, 8}
    assert {b.l for b in skip} == {0, 1, 2}
    assert all(b.matrix_shape == (8, 8) for b in skip)
    contraction = [b for b in found if b.kind == "contraction"]
    assert {b.irrep_out for b in contraction} == {"0e", "1o"}
    assert all(b.element in (1, 8) for b in contraction)
    embedding = [b for b in found if b.kind == "embedding"]
    assert [b.element for b in embedding] == [1, 8] and all(b.layer is None for b in embedding)
    radial_last = [b for b in found if b.kind == "radial" and b.l is not None and b.layer == 1]
    assert {b.l for b in radial_last} == {0, 1, 2}


def test_block_names_are_unique():
    names = [b.name for b in blocks(tiny_mace())]
    assert len(names) == len(set(names))


def test_scale_shift_and_e0s_are_listed_as_not_adaptable():
    names = [n for n, _ in not_adaptable(tiny_mace())]
    assert "atomic_energies_fn.atomic_energies" in names and "scale_shift.scale" in names


def test_unknown_layout_names_the_parameter():
    model = tiny_mace()
    model.interactions[0].mystery = torch.nn.Conv1d(3, 5, 2)
    with pytest.raises(UnsupportedLayoutError, match="interactions.0.mystery.weight"):
        blocks(model)


def test_trainable_bessel_frequencies_are_a_radial_block(tmp_path):
    """mace_run_train saves fine-tuned models with the Bessel frequencies as a parameter."""
    import sparseft as sf
    from sparseft.predict import predict
    from sparseft.testing import default_structures

    model = tiny_mace()
    bessel = model.radial_embedding.bessel_fn
    weights = bessel.bessel_weights.detach().clone()
    del bessel.bessel_weights
    bessel.bessel_weights = torch.nn.Parameter(weights)
    block = next(b for b in blocks(model) if b.param == "radial_embedding.bessel_fn.bessel_weights")
    assert block.kind == "radial" and block.size == weights.numel()
    adapted = sf.wrap(model, [sf.SparseConfig(select=sf.Selector(kinds=["radial"]))])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.add_(0.01)
    merged = adapted.merge()
    structures = default_structures(model)
    assert predict(merged, structures)[0].energy == pytest.approx(predict(adapted, structures)[0].energy, rel=1e-12)
    torch.save(model, tmp_path / "bessel.model")
    loaded = sf.load_model(tmp_path / "bessel.model")
    assert torch.equal(loaded.radial_embedding.bessel_fn.bessel_weights.detach(), weights)
    assert predict(loaded, structures)[0].energy == pytest.approx(predict(model, structures)[0].energy, rel=1e-12)


def test_irrep_helpers_on_a_linear_path():
    """l and parity of every linear block are those of its e3nn instruction's output irrep."""
    model = tiny_mace()
    checked = set()
    for b in blocks(model):
        if b.kind != "linear" or b.detail == "bias":
            continue
        linear = model.get_submodule(b.param.rsplit(".", 1)[0])
        i_in, i_out = (int(x) for x in b.detail.rsplit("#", 1)[1].split("."))
        expected = linear.irreps_out[i_out].ir
        assert (b.l, b.parity) == (expected.l, "e" if expected.p == 1 else "o"), b.name
        assert o3.Irrep(b.irrep_in) == linear.irreps_in[i_in].ir, b.name
        checked.add((b.l, b.parity))
    assert checked == {(0, "e"), (1, "o"), (2, "e")}, "the tiny model's linears map 0e, 1o and 2e paths (max_ell 2)"
