"""data.replay: file replay with n / selection / weight, and pseudo-label replay labelled by the base."""

from __future__ import annotations

import copy

import ase.io
import numpy as np
import pytest

from sparseft._compat import torch
from sparseft.data import Frames, Keys
from sparseft.e0s import current_e0s, set_e0s
from sparseft.predict import graphs, predict
from sparseft.recipe import RecipeError, load_recipe
from sparseft.replay import ReplayConfig, farthest_points, generate, replay_frames
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace

from .finetune_data import emt_frames

KEYS = Keys("REF_energy", "REF_forces", None, None)


@pytest.fixture(scope="module")
def tiny():
    return tiny_mace(atomic_numbers=(29, 79), r_max=4.5)


def _frames(n=12, seed=0):
    return Frames("train.xyz", emt_frames(n, seed=seed, stress=False), list(range(n)))


def test_pseudo_labels_are_the_base_with_the_finetune_e0s(tiny):
    e0s = {29: -1.5, 79: -2.5}
    frames = replay_frames(ReplayConfig(n=5, weight=0.3), _frames(), tiny, e0s, KEYS, [29, 79], log=lambda _: None)
    assert len(frames.atoms) == 5
    before = current_e0s(tiny)
    expected = copy.deepcopy(tiny)
    set_e0s(expected, e0s)
    for atoms, p in zip(frames.atoms, predict(expected, frames.atoms)):
        assert atoms.info["REF_energy"] == pytest.approx(p.energy, abs=1e-9)
        assert np.allclose(atoms.arrays["REF_forces"], p.forces, atol=1e-9)
        assert atoms.info["config_weight"] == 0.3
    assert current_e0s(tiny) == before
    weights = [float(d["weight"]) for d in graphs(frames.atoms, tiny)]
    assert weights == [0.3] * 5, "the loss weight reaches mace's per-config weight"


def test_generated_structures_are_perturbed_copies():
    train = _frames(4)
    out = generate(train, 8, ReplayConfig(rattle=0.05, strain=0.02, swap=0.25, seed=1))
    assert len(out) == 8
    for original, new in zip(train.atoms * 2, out):
        assert len(new) == len(original) and "REF_energy" not in new.info
        assert not np.allclose(new.positions, original.positions)
    assert any(not np.array_equal(n.numbers, o.numbers) for n, o in zip(out, train.atoms * 2))


def test_file_replay_with_n_and_farthest_point_selection(tiny, tmp_path):
    pool = emt_frames(20, seed=3, stress=False)
    for atoms in pool:
        atoms.info["energy_emt"] = atoms.info.pop("REF_energy")
        atoms.arrays["forces_emt"] = atoms.arrays.pop("REF_forces")
    ase.io.write(tmp_path / "old.xyz", pool)
    config = ReplayConfig(
        source=str(tmp_path / "old.xyz"),
        n=6,
        selection="fps",
        energy_key="energy_emt",
        forces_key="forces_emt",
        weight=2.0,
    )
    frames = replay_frames(config, _frames(), tiny, current_e0s(tiny), KEYS, [29, 79], log=lambda _: None)
    assert len(frames.atoms) == 6
    energies = {a.info["energy_emt"] for a in pool}
    assert all(a.info["REF_energy"] in energies for a in frames.atoms), "labels: the file's own"
    again = replay_frames(config, _frames(), tiny, current_e0s(tiny), KEYS, [29, 79], log=lambda _: None)
    assert [a.info["REF_energy"] for a in again.atoms] == [a.info["REF_energy"] for a in frames.atoms]


def test_farthest_points_spread_out():
    points = np.array([[0.0], [0.1], [0.2], [10.0], [5.0]])
    picked = farthest_points(points, 3, seed=0)
    assert len(set(picked)) == 3
    assert {3, 4} & set(picked) and (0 in picked or 3 in picked)
    chosen = points[picked, 0]
    assert chosen.max() - chosen.min() >= 5.0


@pytest.mark.parametrize(
    "replay,message",
    [
        ({"selection": "best"}, "data.replay.selection"),
        ({"labels": "file"}, "generated structures have no file labels"),
        ({"n": 0}, "data.replay.n"),
        ({"colour": 1}, "unknown key"),
    ],
)
def test_bad_replay_settings_name_the_key(tmp_path, replay, message):
    (tmp_path / "r.yaml").write_text("data: {train: x.xyz}\nadapters: [{method: sparse}]\n")
    text = (tmp_path / "r.yaml").read_text().replace("{train: x.xyz}", "{train: x.xyz, replay: %s}" % replay)
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(tmp_path / "r.yaml")


def _finetune(work, name, replay, heads=""):
    lines = f"  replay: {replay}\n" if replay else ""
    (work / f"{name}.yaml").write_text(f"""
base: {{model: tiny.model, dtype: float64}}
data:
  train: lj.xyz
  valid_fraction: 0.25
  E0s: foundation
{lines}adapters: [{{method: full}}]
{heads}train: {{epochs: 6, batch_size: 4, lr: 0.02, scheduler: constant}}
output: {{directory: out-{name}}}
""")
    metrics = run(load_recipe(work / f"{name}.yaml"), quiet=True)
    return torch.load(work / f"out-{name}" / "merged.model", weights_only=False), metrics


def test_pseudo_label_replay_reduces_forgetting(tiny, tmp_path):
    from ase.calculators.lj import LennardJones

    torch.save(tiny, tmp_path / "tiny.model")
    frames = emt_frames(16, stress=False)
    for atoms in frames:  # a new "level of theory": Lennard-Jones
        atoms.calc = LennardJones(sigma=2.3, epsilon=0.05, rc=4.5)
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
    ase.io.write(tmp_path / "lj.xyz", frames)
    plain, _ = _finetune(tmp_path, "plain", None)
    replayed, _ = _finetune(tmp_path, "replay", "{n: 16, weight: 3.0, seed: 5}")
    held_out = generate(Frames("x", emt_frames(8, seed=9, stress=False), list(range(8))), 8, ReplayConfig(seed=11))
    base = [p.forces for p in predict(tiny, held_out)]

    def forgetting(model):
        return float(np.mean([np.abs(p.forces - b).mean() for p, b in zip(predict(model, held_out), base)]))

    assert forgetting(replayed) < 0.7 * forgetting(plain)


def test_the_shipped_replay_set_of_the_embedded_foundation():
    """``embedded:foundation_replay.xyz``: unlabelled structures of the foundation's own
    chemistry (all seven EMT metals), pseudo-labelled by the base at fine-tune time."""
    from sparseft.embedded import DOMAIN_DIR, load_foundation
    from sparseft.run.data import embedded_path as _embedded_path

    base = load_foundation(dtype="float64")
    zs = [int(z) for z in base.atomic_numbers]
    config = ReplayConfig.from_dict({"source": "embedded:foundation_replay.xyz", "labels": "base", "n": 8})
    frames = replay_frames(config, _frames(), base, current_e0s(base), KEYS, zs, _embedded_path, log=lambda _: None)
    assert len(frames.atoms) == 8 and all("REF_energy" in a.info for a in frames.atoms)
    shipped = ase.io.read(DOMAIN_DIR / "foundation_replay.xyz", ":")
    assert {int(z) for a in shipped for z in a.numbers} == set(zs), "every element the foundation knows"
    assert all("REF_energy" not in a.info and a.calc is None for a in shipped), "structures only"


@pytest.mark.slow
def test_the_shipped_replay_set_is_reproducible(tmp_path):
    import subprocess
    import sys

    from sparseft.embedded import DOMAIN_DIR

    script = DOMAIN_DIR.parents[2] / "scripts" / "make_replay_set.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "r.xyz")], check=True, capture_output=True)
    made = ase.io.read(tmp_path / "r.xyz", ":")
    shipped = ase.io.read(DOMAIN_DIR / "foundation_replay.xyz", ":")
    assert len(made) == len(shipped) == 60
    for a, b in zip(made, shipped):
        # the EMT lattice constant's last digits (~1e-11 Å) follow the numpy/scipy build
        assert a.info == b.info and (a.numbers == b.numbers).all() and (a.pbc == b.pbc).all()
        np.testing.assert_allclose(a.cell.array, b.cell.array, atol=1e-9)
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-9)


REPLAY_HEAD = "heads: [{name: base, kind: energy, energy_key: REPLAY_energy, forces_key: REPLAY_forces}]\n"


@pytest.mark.parametrize(
    "heads, message",
    [
        ("", r"data.replay.head: 'base' is not an energy head of this recipe \(energy heads: none defined\)"),
        ("heads: [{name: base, kind: energy}]\n", "head 'base' reads REF_energy, a key of data too"),
    ],
)
def test_a_replay_head_is_an_energy_head_with_its_own_keys(tmp_path, heads, message):
    text = "data: {train: x.xyz, replay: {head: base}}\nadapters: [{method: sparse}]\n"
    (tmp_path / "r.yaml").write_text(text + heads)
    with pytest.raises(RecipeError, match=message):
        load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text(text + REPLAY_HEAD)
    assert load_recipe(tmp_path / "r.yaml").data.replay == {"head": "base"}


def test_replay_labels_go_to_the_replay_heads_keys_only(tiny):
    """Routed to a head, the pseudo-labels sit under its keys and the foundation keys are gone,
    so the target labels and the replay labels train different readouts."""
    head_keys = Keys("REPLAY_energy", "REPLAY_forces", None, None)
    config = ReplayConfig(n=4, head="base")
    e0s = current_e0s(tiny)
    frames = replay_frames(config, _frames(), tiny, e0s, KEYS, [29, 79], log=lambda _: None, target=head_keys)
    for atoms, p in zip(frames.atoms, predict(tiny, frames.atoms)):
        assert "REF_energy" not in atoms.info and "REF_forces" not in atoms.arrays
        assert atoms.info["REPLAY_energy"] == pytest.approx(p.energy, abs=1e-9)
        assert np.allclose(atoms.arrays["REPLAY_forces"], p.forces, atol=1e-9)


def test_a_fine_tune_with_a_replay_head_trains_both_heads_apart(tiny, tmp_path):
    """End to end: the replay labels reach the replay head only, the target labels the
    foundation head only; the merged model is the target head's."""
    torch.save(tiny, tmp_path / "tiny.model")
    ase.io.write(tmp_path / "t.xyz", emt_frames(12, stress=False))
    (tmp_path / "r.yaml").write_text(
        "base: {model: tiny.model, dtype: float64}\n"
        "data: {train: t.xyz, valid_fraction: 0.25, E0s: estimated, replay: {n: 8, seed: 5, head: base}}\n"
        "adapters: [{method: full}]\n" + REPLAY_HEAD + "train: {epochs: 3, batch_size: 4, lr: 0.002}\n"
        "output: {directory: out}\n"
    )
    metrics = run(load_recipe(tmp_path / "r.yaml"), quiet=True)
    assert [h["name"] for h in metrics["heads"]] == ["base"]
    log = (tmp_path / "out" / "train.log").read_text()
    assert "training head 'base'" in log
    routing = "foundation head: energy <- REF_energy (9 frames), forces <- REF_forces (9 frames); "
    assert routing + "base: energy <- REPLAY_energy (8 frames), forces <- REPLAY_forces (8 frames)" in log
    assert (tmp_path / "out" / "merged.model").is_file()
