"""load_model: dtypes, heads and one-line errors for bad files."""

from __future__ import annotations

import pytest

from sparseft import ModelLoadError, load_model
from sparseft._compat import torch
from sparseft.predict import model_dtype, predict
from sparseft.testing.structures import default_structures
from sparseft.testing.tiny import tiny_mace


def test_loads_and_converts_dtype(make_model, tmp_path):
    model = make_model("l1", "float32")
    torch.save(model, tmp_path / "m.model")
    loaded = load_model(tmp_path / "m.model")
    assert model_dtype(loaded) == torch.float32
    double = load_model(tmp_path / "m.model", dtype="float64")
    assert model_dtype(double) == torch.float64
    s = default_structures(model)
    assert abs(predict(double, s)[0].energy - predict(loaded, s)[0].energy) < 1e-3


def test_multi_head_model_picks_a_head(tmp_path):
    model = tiny_mace(heads=["pt_head", "dft"])
    torch.save(model, tmp_path / "mh.model")
    single = load_model(tmp_path / "mh.model", head="dft")
    assert list(single.heads) == ["dft"]
    s = default_structures(model)
    assert abs(predict(single, s)[0].energy - predict(model, s, head="dft")[0].energy) < 1e-8
    with pytest.raises(ModelLoadError, match="head 'nope' not found"):
        load_model(tmp_path / "mh.model", head="nope")


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"nothere.model: no such file"):
        load_model(tmp_path / "nothere.model")


def test_text_file_is_not_a_model(tmp_path):
    (tmp_path / "x.model").write_text("not a model\n")
    with pytest.raises(ModelLoadError, match=r"x.model: not a readable torch model file"):
        load_model(tmp_path / "x.model")


def test_state_dict_is_not_a_model(make_model, tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelLoadError, match=r"sd.pt: holds a dict"):
        load_model(tmp_path / "sd.pt")


def test_other_module_is_not_a_mace_model(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "lin.model")
    with pytest.raises(ModelLoadError, match=r"lin.model: holds a Linear, not a mace-torch"):
        load_model(tmp_path / "lin.model")


def test_unsupported_layout(make_model, tmp_path):
    model = make_model()
    model.products[0].extra = torch.nn.Bilinear(2, 2, 3)
    torch.save(model, tmp_path / "odd.model")
    with pytest.raises(ModelLoadError, match=r"odd.model: unsupported layout: .*products.0.extra.weight"):
        load_model(tmp_path / "odd.model")


def test_plain_mace_class_loads_adapts_and_merges(tmp_path):
    import sparseft as sf

    model = tiny_mace(scale_shift=False)
    assert type(model).__name__ == "MACE"
    torch.save(model, tmp_path / "plain.model")
    base = load_model(tmp_path / "plain.model")
    adapted = sf.wrap(base, [sf.SparseConfig()])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.05)
    merged = adapted.merge()
    assert type(merged) is type(base)
    s = default_structures(base)
    assert abs(predict(merged, s)[0].energy - predict(adapted, s)[0].energy) < 1e-9


def test_float32_to_float64_rebuilds_constants_in_float64(make_model, tmp_path):
    from sparseft.testing import check_equivariance

    torch.save(make_model("l1", "float32"), tmp_path / "f32.model")
    rebuilt = load_model(tmp_path / "f32.model", dtype="float64")
    cast = torch.load(tmp_path / "f32.model", weights_only=False).double()
    tight = check_equivariance(rebuilt, rtol=1e-11)
    assert tight.passed, tight.format_table()
    assert check_equivariance(cast).row("rotation", "forces").max_error > 10 * tight.row("rotation", "forces").max_error
