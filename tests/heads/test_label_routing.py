"""Each head trains on the labels routed to it alone (issue 21, item 1): a label key that two
heads read is refused (tests/bad_input_corpus.py, ``heads.*``), and the log lists which labels
train which head."""

from __future__ import annotations

import ase.io

from sparseft._compat import torch
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

from ..finetune_data import MULTITASK_HEADS, multitask_frames, recipe_text


def test_the_log_lists_the_labels_of_each_head(tmp_path):
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), tmp_path / "tiny.model")
    ase.io.write(tmp_path / "data.xyz", multitask_frames(12))
    (tmp_path / "r.yaml").write_text(recipe_text("tiny.model", "data.xyz", "out", epochs=1) + MULTITASK_HEADS)
    lines = []
    run(load_recipe(tmp_path / "r.yaml"), log=lines.append)
    labels = [line for line in lines if line.startswith("labels training each head")]
    assert len(labels) == 1, lines
    text = labels[0]
    assert "foundation head: energy <- REF_energy (" in text and "forces <- REF_forces (" in text
    assert "lj: energy <- LJ_energy (" in text and "forces <- LJ_forces (" in text
    assert "spin: magmoms <- REF_magmoms (" in text
    assert "stress" not in text  # no frame carries stress: it trains nobody
