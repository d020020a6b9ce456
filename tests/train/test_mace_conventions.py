"""mace_run_train's data conventions: IsolatedAtom frames give E0s and are never trained on,
E0s from a JSON file, rank-deficient `estimated` E0s said out loud, config_type_weights, the
per-config_type error table and the relative force RMSE."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
from ase import Atoms

from sparseft._compat import torch
from sparseft.data import DataError, Frames, Keys, to_atomic_data
from sparseft.e0s import current_e0s, resolve_e0s
from sparseft.recipe import RecipeError, load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

from ..finetune_data import emt_frames, recipe_text

ISOLATED = {29: -0.5, 79: -0.25}  # made-up isolated-atom energies (eV), far from the model's E0s


def _isolated(z: int) -> Atoms:
    atoms = Atoms(numbers=[z], positions=[[0, 0, 0]], cell=[20, 20, 20], pbc=False)
    atoms.info.update(config_type="IsolatedAtom", REF_energy=ISOLATED[z])
    return atoms


@pytest.fixture(scope="module")
def run_with_isolated_atoms(tmp_path_factory):
    d = tmp_path_factory.mktemp("conventions")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    frames = emt_frames(12)
    for i, atoms in enumerate(frames):
        atoms.info["config_type"] = "bulk" if i % 2 else "rattled"
    ase.io.write(d / "data.xyz", [_isolated(29)] + frames + [_isolated(79)])
    text = recipe_text("tiny.model", "data.xyz", "out", epochs=1).replace(
        "  E0s: estimated\n", "  config_type_weights: {bulk: 2.0}\n"
    )
    (d / "r.yaml").write_text(text)
    lines = []
    metrics = run(load_recipe(d / "r.yaml"), log=lines.append)
    return d, metrics, "\n".join(lines)


def test_isolated_atoms_give_the_e0s_and_are_not_trained_on(run_with_isolated_atoms):
    _, metrics, log = run_with_isolated_atoms
    assert metrics["E0s"] == pytest.approx({"Cu": ISOLATED[29], "Au": ISOLATED[79]})
    assert "2 IsolatedAtom frame(s) in the training data are not trained on; their energies are the E0s of Cu Au" in log
    assert "train: 8 frames, valid: 2 frames, test: 2 frames" in log  # 12 frames, none of them single atoms


def test_final_evaluation_tables(run_with_isolated_atoms):
    d, metrics, log = run_with_isolated_atoms
    assert "train" not in metrics["splits"]  # skipped by default
    assert "final evaluation skips the train split" in log and "evaluated test: 2 frames" in log
    test = metrics["splits"]["test"]
    rel = (
        100
        * test["forces_rmse"]
        / np.sqrt(
            np.mean(
                np.concatenate([a.arrays["REF_forces"].ravel() for a in ase.io.read(d / "data.xyz", ":") if len(a) > 1])
                ** 2
            )
        )
    )
    assert 0 < test["forces_rel_rmse_percent"] < 10 * rel  # same order as RMSE / RMS(all reference forces)
    types = metrics["config_types"]["test"]
    assert set(types) <= {"bulk", "rattled"} and types
    assert sum(1 for _ in types) >= 1
    assert "errors per config_type:" in log and "rel F RMSE" in log
    assert json.loads((d / "out" / "metrics.json").read_text())["config_types"] == metrics["config_types"]
    for name in ("parity_energy.png", "parity_forces.png", "parity_stress.png", "learning_curves.png"):
        assert (d / "out" / name).is_file(), name


def test_train_log_holds_everything_printed_with_timestamps(run_with_isolated_atoms):
    import re

    d, _, log = run_with_isolated_atoms
    lines = (d / "out" / "train.log").read_text().splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines)
    assert [line[20:] for line in lines] == log.splitlines()


def test_progress_lines_without_a_terminal():
    from sparseft.train_log import ProgressTicker

    lines = []
    ticker = ProgressTicker(lines.append, 0.0, total_steps=10)
    ticker(1, 0, 0.5)
    ticker(2, 0, 0.25)
    assert len(lines) == 2 and lines[1].startswith("step 2/10 (epoch 1)  loss 0.25") and "steps/s" in lines[1]
    quiet = ProgressTicker(lines.append, 3600.0, total_steps=10)
    quiet(3, 0, 0.1)
    assert len(lines) == 2


def test_config_type_weights_reach_the_loss_weights():
    model = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    frames = emt_frames(4)
    for i, atoms in enumerate(frames):
        atoms.info["config_type"] = "bulk" if i % 2 else "rattled"
    frames[0].info["config_weight"] = 3.0
    items = to_atomic_data(Frames("x", frames, [0, 1, 2, 3]), model, Keys(), config_type_weights={"bulk": 2.0})
    assert [float(item["weight"]) for item in items] == [3.0, 2.0, 1.0, 2.0]


def test_config_type_weights_are_checked(tmp_path):
    (tmp_path / "r.yaml").write_text(
        recipe_text("tiny.model", "x.xyz", "out").replace("  E0s: estimated\n", "  config_type_weights: {bulk: -1}\n")
    )
    with pytest.raises(RecipeError, match=r"data.config_type_weights: expected \{config_type: weight >= 0\}"):
        load_recipe(tmp_path / "r.yaml")


def test_e0s_from_a_json_file(tmp_path):
    model = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    frames = Frames("x", emt_frames(2), [0, 1])
    (tmp_path / "e0s.json").write_text(json.dumps({"29": -1.5, "Au": -2.5}))
    assert resolve_e0s(str(tmp_path / "e0s.json"), model, frames, Keys()) == {29: -1.5, 79: -2.5}
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"bad.json: expected a JSON object \{Z or element: eV\}"):
        resolve_e0s(str(tmp_path / "bad.json"), model, frames, Keys())
    with pytest.raises(DataError, match="missing.json: no such file"):
        resolve_e0s(str(tmp_path / "missing.json"), model, frames, Keys())


def test_recipe_resolves_a_json_e0s_path(tmp_path):
    (tmp_path / "r.yaml").write_text(
        recipe_text("tiny.model", "x.xyz", "out").replace("E0s: estimated", "E0s: e0s.json")
    )
    assert load_recipe(tmp_path / "r.yaml").data.E0s == str(tmp_path / "e0s.json")


def test_estimated_e0s_on_one_composition_say_what_they_did():
    model = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    frames = emt_frames(6)
    for atoms in frames:  # every frame Cu3Au: the two E0s cannot be separated
        atoms.numbers = [29, 29, 29, 79]
    for atoms in frames:
        atoms.info["REF_energy"] = -3.0 - 0.01 * len(atoms)
    messages = []
    e0s = resolve_e0s("estimated", model, Frames("x", frames, list(range(6))), Keys(), log=messages.append)
    assert len(messages) == 1
    assert (
        "data.E0s: estimated: the training compositions (Cu3 Au1) cannot separate the 2 elements (rank 1)"
        in messages[0]
    )
    assert "smallest change to the base's E0s" in messages[0]
    base = current_e0s(model)
    correction = np.array([e0s[29] - base[29], e0s[79] - base[79]])
    assert correction[0] / correction[1] == pytest.approx(3.0)  # minimum norm: along the composition (3, 1)
