"""Adapter files: small, pickle-free, and damaged files give clear errors."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

import sparseft as sf
from sparseft._compat import torch
from sparseft.io import META_FILE, TENSOR_FILE
from sparseft.testing.tiny import tiny_mace


@pytest.fixture
def saved(make_model, tmp_path):
    base = make_model("l1", "float64")
    adapted = sf.wrap(
        base,
        [
            sf.SparseConfig(select=sf.Selector(kinds=["skip", "contraction"])),
            sf.LoRAConfig(select=sf.Selector(kinds=["linear"]), rank=2),
        ],
    )
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.05)
    sf.save_adapter(adapted, tmp_path / "ad")
    return base, tmp_path / "ad"


def test_files_are_json_and_safetensors(saved):
    _, directory = saved
    meta = json.loads((directory / META_FILE).read_text())
    assert meta["format"] == "sparseft-adapter" and meta["format_version"] == 1
    assert {"torch", "mace-torch", "e3nn"} <= set(meta["versions"])
    assert [a["method"] for a in meta["adapters"]] == ["sparse", "lora"]
    with safe_open(str(directory / TENSOR_FILE), "pt") as f:
        keys = list(f.keys())
    assert any(k.endswith("interactions.0.skip_tp.weight/index_gaps") for k in keys)  # uint16 index gaps
    assert any(k.endswith("interactions.0.linear.weight/0.A") for k in keys)
    assert not (directory / TENSOR_FILE).read_bytes().startswith(b"\x80")  # not a pickle


def test_existing_directory_is_not_overwritten(saved):
    base, directory = saved
    adapted = sf.load_adapter(base, directory)
    with pytest.raises(FileExistsError, match="not empty"):
        sf.save_adapter(adapted, directory)
    sf.save_adapter(adapted, directory, overwrite=True)
    assert sorted(p.name for p in directory.iterdir()) == [TENSOR_FILE, META_FILE]


def test_truncated_tensor_file(saved):
    base, directory = saved
    data = (directory / TENSOR_FILE).read_bytes()
    (directory / TENSOR_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(sf.AdapterFileError, match="truncated or edited"):
        sf.load_adapter(base, directory)


def test_edited_values_are_caught_by_the_reference_prediction(saved):
    base, directory = saved
    meta = json.loads((directory / META_FILE).read_text())
    meta["adapters"][1]["scale"] = 2.0  # plausible edit: a valid config, a different model
    (directory / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(sf.AdapterFileError, match="does not reproduce the reference prediction"):
        sf.load_adapter(base, directory)


def test_broken_json(saved):
    base, directory = saved
    text = (directory / META_FILE).read_text()
    (directory / META_FILE).write_text(text[:-20])
    with pytest.raises(sf.AdapterFileError, match="not valid JSON"):
        sf.load_adapter(base, directory)


def test_missing_directory(make_model, tmp_path):
    with pytest.raises(sf.AdapterFileError, match="not an adapter directory"):
        sf.load_adapter(make_model(), tmp_path / "nope")


def test_other_element_table_is_refused(saved):
    _, directory = saved
    with pytest.raises(sf.AdapterFileError, match="element table differs"):
        sf.load_adapter(tiny_mace(atomic_numbers=(1, 6, 8)), directory)


def test_sparse_adapter_at_3_percent_is_small():
    """At 3% density the file is at most 10% of the base model's weight bytes."""
    base = tiny_mace(hidden_irreps="64x0e+64x1o", dtype=torch.float32)
    adapted = sf.wrap(base, [sf.SparseConfig()])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_()
    adapted.fix_support(density=0.03)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        sf.save_adapter(adapted, Path(tmp) / "ad")
        size = (Path(tmp) / "ad" / TENSOR_FILE).stat().st_size
    base_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    assert abs(adapted.density()["overall"] - 0.03) < 0.001
    assert size <= 0.10 * base_bytes, (size, base_bytes)


def test_changed_e0s_are_saved_loaded_and_merged(make_model, tmp_path):
    from sparseft.e0s import current_e0s, set_e0s

    base = make_model()
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["readout"]))])
    set_e0s(adapted.model, {1: -10.0, 8: -400.0})
    sf.save_adapter(adapted, tmp_path / "ad")
    loaded = sf.load_adapter(base, tmp_path / "ad")
    assert current_e0s(loaded.model) == {1: -10.0, 8: -400.0}
    assert current_e0s(loaded.merge()) == {1: -10.0, 8: -400.0}
    assert current_e0s(base)[1] != -10.0


def test_reference_structure_holds_the_most_changed_elements(tmp_path):
    base = tiny_mace(atomic_numbers=(1, 6, 8, 13, 29, 79))
    adapted = sf.wrap(base, [sf.SparseConfig(select=sf.Selector(kinds=["skip"], elements=["Cu"]))])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.05)
    sf.save_adapter(adapted, tmp_path / "ad")
    meta = json.loads((tmp_path / "ad" / META_FILE).read_text())
    elements = meta["reference"]["elements"]
    assert 29 in elements and len(elements) == 4 and len(meta["reference"]["forces"]) == 4
    sf.load_adapter(base, tmp_path / "ad")
    for damaged in ([], [92], "Cu"):
        meta["reference"]["elements"] = damaged
        (tmp_path / "ad" / META_FILE).write_text(json.dumps(meta))
        with pytest.raises(sf.AdapterFileError, match="reference.elements"):
            sf.load_adapter(base, tmp_path / "ad")
    del meta["reference"]["elements"]  # read as a file of the earlier format: every element, which disagrees
    (tmp_path / "ad" / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(sf.AdapterFileError, match="does not reproduce the reference prediction"):
        sf.load_adapter(base, tmp_path / "ad")


def test_sparse_indices_are_stored_as_uint16_gaps_when_they_fit():
    from sparseft.adapters.sparse import _decode_indices, _encode_indices

    near = torch.tensor([0, 3, 65538, 65539])
    far = torch.tensor([7, 70_000])
    assert _encode_indices(near)["index_gaps"].dtype == torch.uint16
    assert _encode_indices(far)["indices"].dtype == torch.int32
    for flat in (near, far, torch.tensor([], dtype=torch.long)):
        assert torch.equal(_decode_indices(_encode_indices(flat)).long(), flat)
