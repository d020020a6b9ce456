"""Per-element blocks of elements absent from the training data carry no delta: no optimiser
state, no file entries, and densities count only the weights the data can reach."""

from __future__ import annotations

import json

import ase.io
import pytest

import sparseft as sf
from sparseft._compat import torch
from sparseft.adapters.sparse import SparsePart
from sparseft.blocks import blocks
from sparseft.model import reachable
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.select import SelectionError
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames, recipe_text


@pytest.fixture(scope="module")
def base():
    return tiny_mace(atomic_numbers=(8, 29, 79), r_max=4.5)


def test_unreachable_blocks_get_no_delta(base):
    everything = sf.wrap(
        base,
        [
            sf.SparseConfig(select=sf.Selector(exclude=["*.linear.*"])),
            sf.LoRAConfig(select=sf.Selector(kinds=["linear"])),
        ],
    )
    cu_au = sf.wrap(
        base,
        [
            sf.SparseConfig(select=sf.Selector(exclude=["*.linear.*"])),
            sf.LoRAConfig(select=sf.Selector(kinds=["linear"])),
        ],
        train_elements=[79, 29],
    )
    assert cu_au.train_elements == (29, 79)
    sparse_size = sum(
        b.size for b in reachable(blocks(base), [29, 79]) if not (b.kind == "linear" or ".linear." in b.param)
    )
    assert (
        sum(p.delta.numel() for p in [p for _, _, p in cu_au.all_parts() if isinstance(p, SparsePart)]) == sparse_size
    )
    assert cu_au.num_trainable() < everything.num_trainable()
    for _, _, part in cu_au.all_parts():
        assert all(b.element in (None, 29, 79) for b in part.blocks)
    with torch.no_grad():  # a delta on every reachable entry: density 1 of the reachable weights
        for p in [p for _, _, p in cu_au.all_parts() if isinstance(p, SparsePart)]:
            p.delta.fill_(0.01)
    assert cu_au.density()["adapters"]["sparse0"] == 1.0


def test_a_selector_of_absent_elements_only_is_an_error(base):
    with pytest.raises(SelectionError, match="absent from the training data"):
        sf.wrap(base, [sf.SparseConfig(select=sf.Selector(elements=["O"]))], train_elements=[29, 79])


def test_the_restriction_survives_save_and_load(base, tmp_path):
    adapted = sf.wrap(base, [sf.FreezeConfig()], train_elements=[29, 79])
    with torch.no_grad():
        for p in adapted.trainable_parameters():
            p.normal_(0, 0.01)
    sf.save_adapter(adapted, tmp_path / "ad")
    loaded = sf.load_adapter(base, tmp_path / "ad")
    assert loaded.train_elements == (29, 79) and loaded.num_trainable() == adapted.num_trainable()
    meta = json.loads((tmp_path / "ad" / "sparseft.json").read_text())
    meta["train_elements"] = [92]
    (tmp_path / "ad" / "sparseft.json").write_text(json.dumps(meta))
    with pytest.raises(sf.AdapterFileError, match="'train_elements'"):
        sf.load_adapter(base, tmp_path / "ad")


def test_finetune_density_is_relative_to_reachable_weights(base, tmp_path):
    torch.save(base, tmp_path / "ocuau.model")
    ase.io.write(tmp_path / "data.xyz", emt_frames(10))
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text("ocuau.model", "data.xyz", "out", epochs=2, target_density=0.1))
    metrics = run(load_recipe(path), quiet=True)
    reach = sum(b.size for b in reachable(blocks(base), [29, 79]))
    assert metrics["reachable_parameters"] == reach < metrics["base_parameters"]
    assert metrics["selected_parameters"] == reach and metrics["training_elements"] == ["Cu", "Au"]
    assert abs(metrics["changed_parameters"] - 0.1 * reach) <= 1
    rows = json.loads((tmp_path / "out" / "sparsity.json").read_text())
    assert rows and not any(r["element"] == "O" for r in rows)


def _replay_run(base, tmp_path, name: str, replay: str) -> tuple[dict, list]:
    path = tmp_path / f"{name}.yaml"
    text = recipe_text("ocuau.model", "data.xyz", f"out-{name}", epochs=1, target_density=0.1)
    path.write_text(text.replace("  E0s: estimated\n", f"  E0s: estimated\n  replay: {replay}\n"))
    metrics = run(load_recipe(path), quiet=True)
    return metrics, json.loads((tmp_path / f"out-{name}" / "sparsity.json").read_text())


def test_replay_structures_add_their_elements_to_the_reachable_ones(base, tmp_path):
    torch.save(base, tmp_path / "ocuau.model")
    ase.io.write(tmp_path / "data.xyz", emt_frames(10))
    oxides = emt_frames(3, seed=4, stress=False)
    for atoms in oxides:
        atoms[0].symbol = "O"  # the base labels them (labels: base): any element the base knows
    ase.io.write(tmp_path / "old.xyz", oxides)
    metrics, rows = _replay_run(base, tmp_path, "oxygen", "{source: old.xyz, labels: base}")
    assert metrics["training_elements"] == ["O", "Cu", "Au"]
    assert metrics["reachable_parameters"] == metrics["base_parameters"] == sum(b.size for b in blocks(base))
    assert {r["element"] for r in rows} >= {"O", "Cu", "Au"}

    metrics, rows = _replay_run(base, tmp_path, "generated", "{n: 4}")  # copies of Cu/Au cells: no O
    reach = sum(b.size for b in reachable(blocks(base), [29, 79]))
    assert metrics["training_elements"] == ["Cu", "Au"]
    assert metrics["reachable_parameters"] == metrics["selected_parameters"] == reach < metrics["base_parameters"]
    assert not any(r["element"] == "O" for r in rows)
