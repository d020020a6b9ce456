"""The command line: inspect, check, tiny-model; errors are one line and exit 2."""

from __future__ import annotations

import pytest

from sparseft._compat import torch
from sparseft.cli import main
from sparseft.heads import HeadedModel, feature_irreps
from sparseft.testing.broken import ConstantForce, PolarVectorMagmomHead


@pytest.fixture
def model_file(make_model, tmp_path):
    path = tmp_path / "tiny.model"
    torch.save(make_model("l1", "float64"), path)
    return path


def test_inspect_prints_the_catalogue(model_file, capsys):
    assert main(["inspect", str(model_file), "--details"]) == 0
    out = capsys.readouterr().out
    assert "interactions.0.skip_tp.weight[1ox0e->1o Z=8]" in out
    assert "share" in out and "not adaptable" in out


def test_inspect_groups_by_kind_by_default(model_file, capsys):
    assert main(["inspect", str(model_file)]) == 0
    out = capsys.readouterr().out
    assert "skip_tp.weight[" not in out and "contraction" in out and "--details" in out
    assert len(out.splitlines()) < 25


def test_inspect_resolves_a_selector(model_file, capsys):
    assert main(["inspect", str(model_file), "--select", "kinds=skip layers=0 elements=O"]) == 0
    out = capsys.readouterr().out
    assert "resolves to 3 blocks, 192 weights" in out
    assert "Z=1" not in out


def test_inspect_groups(model_file, capsys):
    assert main(["inspect", str(model_file), "--group", "kind"]) == 0
    out = capsys.readouterr().out
    assert "contraction" in out and "skip_tp.weight[" not in out


def test_bad_selector_is_a_clear_error(model_file, capsys):
    assert main(["inspect", str(model_file), "--select", "kinds=nope"]) == 2
    assert "unknown kind" in capsys.readouterr().err


def test_missing_model_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "x.model")]) == 2
    assert "x.model: no such file" in capsys.readouterr().err


def test_check_passes_a_real_model_and_fails_a_broken_one(model_file, make_model, tmp_path, capsys):
    assert main(["check", str(model_file)]) == 0
    assert "PASS" in capsys.readouterr().out
    broken = tmp_path / "broken.model"
    torch.save(ConstantForce(make_model("l1", "float64")), broken)
    # a broken wrapper is not a MACE model: load_model refuses it before any check
    assert main(["check", str(broken)]) == 2
    # a MACE model with a head of the wrong parity loads, and the check itself fails it
    base = make_model("l1", "float64")
    wrong = PolarVectorMagmomHead("wrong", {}, irreps_list=feature_irreps(base), num_elements=2).double()
    torch.save(HeadedModel(base, [wrong]), tmp_path / "wrong_head.model")
    capsys.readouterr()
    assert main(["check", str(tmp_path / "wrong_head.model")]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "wrong" in out


def test_check_with_an_adapter(model_file, tmp_path, capsys):
    import sparseft as sf

    base = sf.load_model(model_file)
    adapted = sf.wrap(base, [sf.LoRAConfig(rank=2)])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.1)
    sf.save_adapter(adapted, tmp_path / "ad")
    assert main(["check", str(model_file), "--adapter", str(tmp_path / "ad")]) == 0
    assert "adapter" in capsys.readouterr().out


def test_tiny_model_like_mp0_medium(tmp_path, capsys):
    from sparseft.blocks import blocks

    target = tmp_path / "mp0.model"
    assert main(["tiny-model", str(target), "--like", "mp0-medium", "--dtype", "float32"]) == 0
    model = torch.load(target, weights_only=False)
    assert sum(p.numel() for p in model.parameters()) == 4_688_656  # MACE-MP-0 medium's weight count
    assert len(model.atomic_numbers) == 89 and len(blocks(model)) == 1111
    assert "4688656 weights" in capsys.readouterr().out


def test_tiny_model_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "t.model"
    assert main(["tiny-model", str(target)]) == 0
    assert main(["tiny-model", str(target)]) == 2
    assert "exists" in capsys.readouterr().err
