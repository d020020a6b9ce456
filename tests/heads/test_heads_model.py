"""Head behaviour: the energy head starts as the foundation, moment constraints, merging,
adapter save/load with heads."""

from __future__ import annotations

import numpy as np
import pytest

from sparseft import SparseConfig, load_adapter, save_adapter, wrap
from sparseft._compat import torch
from sparseft.heads import HeadedModel, build_head
from sparseft.heads.magmom import constrain_to_total
from sparseft.io import AdapterFileError
from sparseft.predict import predict
from sparseft.testing import default_structures


def test_new_energy_head_starts_as_the_foundation(make_model):
    adapted = HeadedModel(wrap(make_model("l1"), [SparseConfig()]))
    adapted.add_head(build_head("dft", "energy", {}, adapted.base))
    structures = default_structures(adapted)
    for pred in predict(adapted, structures):
        head = pred.heads["dft"]
        assert head["energy"] == pytest.approx(pred.energy, rel=1e-13)
        np.testing.assert_allclose(head["forces"], pred.forces, atol=1e-12)
        if pred.stress is not None:
            np.testing.assert_allclose(head["stress"], pred.stress, atol=1e-12)


def test_heads_do_not_change_the_foundation_prediction(make_model):
    model = make_model("l1")
    plain = wrap(model, [SparseConfig()])
    headed = HeadedModel(wrap(model, [SparseConfig()]))
    headed.add_head(build_head("spin", "magmom", {}, headed.base))
    headed.add_head(build_head("dft", "energy", {}, headed.base))
    structures = default_structures(plain)
    predict(plain, structures), predict(headed, structures)  # warm-up (first call rounds differently)
    for a, b in zip(predict(plain, structures), predict(headed, structures)):
        assert a.energy == pytest.approx(b.energy, rel=1e-14)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-13)


def test_total_moment_constraint():
    moments = torch.tensor([0.1, 0.2, 0.3, 1.0, -1.0], dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1])
    out = constrain_to_total(moments, batch, torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 0.0]))
    assert float(out[:3].sum()) == pytest.approx(1.0)
    torch.testing.assert_close(out[:3] - moments[:3], torch.full((3,), (1.0 - 0.6) / 3, dtype=torch.float64))
    torch.testing.assert_close(out[3:], moments[3:])  # no label: unchanged


def _trained_heads(model):
    adapted = HeadedModel(wrap(model, [SparseConfig()]))
    for name, kind in (("dft", "energy"), ("spin", "magmom"), ("vec", "vector_magmom")):
        adapted.add_head(build_head(name, kind, {"hidden": 8}, adapted.base, seed=1))
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.add_(0.1 * torch.randn_like(p))
        adapted.output_heads["dft"].atomic_energies.add_(0.5)
    adapted.model.proximal_step(0.0)
    return adapted


def test_adapter_with_heads_round_trips(make_model, tmp_path):
    model = make_model("l1")
    adapted = _trained_heads(model)
    save_adapter(adapted, tmp_path / "a")
    loaded = load_adapter(model, tmp_path / "a")
    assert list(loaded.output_heads) == ["dft", "spin", "vec"]
    structures = default_structures(adapted)
    for a, b in zip(predict(adapted, structures), predict(loaded, structures)):
        for name in ("dft", "spin", "vec"):
            for key, value in a.heads[name].items():
                np.testing.assert_allclose(b.heads[name][key], value, rtol=1e-12, atol=1e-12)
    merged = loaded.merge()
    for a, b in zip(predict(adapted, structures), predict(merged, structures)):
        assert b.heads["dft"]["energy"] == pytest.approx(a.heads["dft"]["energy"], rel=1e-12)
        np.testing.assert_allclose(b.heads["vec"]["magmoms"], a.heads["vec"]["magmoms"], atol=1e-12)


def test_edited_head_tensor_is_refused(make_model, tmp_path):
    from safetensors.torch import load_file, save_file

    from sparseft.files import sha256_file
    from sparseft.io import TENSOR_FILE

    model = make_model("l1")
    save_adapter(_trained_heads(model), tmp_path / "a")
    tensors = load_file(str(tmp_path / "a" / TENSOR_FILE))
    tensors["heads/spin/offset"] = tensors["heads/spin/offset"] + 1.0
    save_file(tensors, str(tmp_path / "a" / TENSOR_FILE))
    meta_path = tmp_path / "a" / "sparseft.json"
    import json

    meta = json.loads(meta_path.read_text())
    meta["tensors_sha256"] = sha256_file(tmp_path / "a" / TENSOR_FILE)  # a consistent hash: the reference must catch it
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(AdapterFileError, match="head 'spin' does not reproduce"):
        load_adapter(model, tmp_path / "a")


def test_head_only_training_leaves_the_trunk_frozen(make_model):
    adapted = HeadedModel(wrap(make_model("l1"), [], allow_empty=True))
    adapted.add_head(build_head("spin", "magmom", {}, adapted.base))
    assert adapted.trainable_parameters() == adapted.head_parameters()
    assert all(not p.requires_grad for p in adapted.model.parameters())
