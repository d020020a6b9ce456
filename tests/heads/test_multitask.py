"""Multi-task training: masked losses over heads, random loss weighting, and an end-to-end
fine-tune with an extra energy head and a magnetic-moment head."""

from __future__ import annotations

import csv
import json

import ase.io
import numpy as np
import pytest

from sparseft import SparseConfig, wrap
from sparseft._compat import torch
from sparseft.data import Frames, Keys, MagmomKeys, attach_labels, loader, to_atomic_data
from sparseft.heads import HeadedModel, build_head
from sparseft.recipe import RecipeError, TrainSection, load_recipe, recipe_from_dict
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace
from sparseft.train.losses import loss_terms
from sparseft.train.trainer import Trainer

from ..finetune_data import MULTITASK_HEADS, multitask_frames, recipe_text

HEAD_KEYS = [("lj", Keys("LJ_energy", "LJ_forces", None, None)), ("spin", MagmomKeys())]


@pytest.fixture(scope="module")
def cuau():
    return tiny_mace(atomic_numbers=(29, 79), r_max=4.5)


def _adapted(cuau):
    adapted = HeadedModel(wrap(cuau, [SparseConfig()]))
    adapted.add_head(build_head("lj", "energy", {}, adapted.base))
    adapted.add_head(build_head("spin", "magmom", {}, adapted.base, seed=2))
    with torch.no_grad():
        for p in adapted.output_heads["spin"].parameters():
            p.add_(0.1 * torch.randn_like(p))
    return adapted


def test_masked_multitask_loss_uses_only_labelled_frames(cuau):
    frames = multitask_frames(8)
    adapted = _adapted(cuau)
    labelled = attach_labels(
        Frames("mt.xyz", frames, list(range(8))), Keys(), extra=[(HEAD_KEYS[0][1], False), HEAD_KEYS[1][1]]
    )
    data = to_atomic_data(labelled, adapted, Keys(), heads=HEAD_KEYS)
    batch = next(iter(loader(data, 8, shuffle=False)))
    out = adapted(batch, training=False, compute_force=True)
    terms = loss_terms(batch, out)
    assert set(terms) == {"energy", "forces", "lj.energy", "lj.forces", "spin.magmoms"}

    ptr = batch["ptr"].numpy()
    n = np.diff(ptr)
    has = lambda i, key, where: key in (frames[i].info if where == "info" else frames[i].arrays)  # noqa: E731
    e_pred = out["heads"]["lj"]["energy"].detach().numpy()
    rows = [i for i in range(8) if has(i, "LJ_energy", "info")]
    assert 0 < len(rows) < 8  # some frames lack the label
    expected = np.mean([((e_pred[i] - frames[i].info["LJ_energy"]) / n[i]) ** 2 for i in rows])
    assert float(terms["lj.energy"]) == pytest.approx(expected, rel=1e-10)

    m_pred = out["heads"]["spin"]["magmoms"].detach().numpy()
    rows = [i for i in range(8) if has(i, "REF_magmoms", "arrays")]
    assert 0 < len(rows) < 8
    diffs = np.concatenate([m_pred[ptr[i] : ptr[i + 1]] - frames[i].arrays["REF_magmoms"] for i in rows])
    assert float(terms["spin.magmoms"]) == pytest.approx(np.mean(diffs**2), rel=1e-10)

    e_rows = [i for i in range(8) if has(i, "REF_energy", "info")]
    assert len(e_rows) < 8
    expected = np.mean([((out["energy"][i].item() - frames[i].info["REF_energy"]) / n[i]) ** 2 for i in e_rows])
    assert float(terms["energy"]) == pytest.approx(expected, rel=1e-10)


def test_random_loss_weighting_redraws_reproducibly(cuau):
    adapted = _adapted(cuau)
    config = TrainSection(loss_weighting="random", seed=3)
    weights = {"energy": 1.0, "forces": 10.0, "stress": 0.0, "spin.magmoms": 5.0}
    trainer = Trainer(adapted, [], [], config, device="cpu", compute_stress=False, task_weights=weights)
    draws = [trainer.weights_at(step) for step in range(200)]
    assert draws[0] != draws[1]
    assert draws[5] == trainer.weights_at(5)  # a resumed run draws the same weights
    assert all(d["stress"] == 0.0 for d in draws)  # disabled tasks stay off
    for name in ("energy", "forces", "spin.magmoms"):
        ratio = np.mean([d[name] for d in draws]) / weights[name]
        assert 0.8 < ratio < 1.2  # K * softmax(z) averages to about 1
    fixed = Trainer(adapted, [], [], TrainSection(), device="cpu", compute_stress=False, task_weights=weights)
    assert fixed.weights_at(0) == fixed.weights_at(7) == weights


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory, cuau):
    d = tmp_path_factory.mktemp("mt")
    torch.save(cuau, d / "tiny.model")
    ase.io.write(d / "data.xyz", multitask_frames(30))
    recipe = d / "mt.yaml"
    recipe.write_text(recipe_text("tiny.model", "data.xyz", "out", epochs=8, lr=0.01) + MULTITASK_HEADS)
    metrics = run(load_recipe(recipe), quiet=True)
    return d / "out", metrics


@pytest.mark.slow
def test_multitask_finetune_outputs_cover_every_head(multitask_run):
    out, metrics = multitask_run
    for name in (
        "merged.model",
        "merged_with_heads.model",
        "merged_multihead.model",
        "parity_lj_energy.png",
        "parity_lj_forces.png",
        "parity_spin_magmoms.png",
        "parity_forces.png",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert [h["name"] for h in saved["heads"]] == ["lj", "spin"]
    test = saved["splits"]["test"]
    for key in ("forces_mae", "lj.forces_mae", "lj.energy_per_atom_mae", "spin.magmoms_mae"):
        assert test[key] is not None, key
    history = list(csv.DictReader((out / "history.csv").open()))
    assert "valid_spin.magmoms_mae" in history[0] and "valid_lj.forces_mae" in history[0]


@pytest.mark.slow
def test_multitask_finetune_learns_every_head(multitask_run):
    _, metrics = multitask_run
    test, zero = metrics["splits"]["test"], metrics["base_zero_shot"]["test"]
    assert test["spin.magmoms_mae"] < 0.7 * zero["spin.magmoms_mae"]  # beats the per-element mean
    assert test["lj.forces_mae"] < zero["lj.forces_mae"]
    assert metrics["head_parameters"] > 0
    assert metrics["trainable_parameters"] > metrics["head_parameters"]


@pytest.mark.slow
def test_multitask_adapter_restores_heads(multitask_run, cuau):
    from sparseft import load_adapter, load_model
    from sparseft.predict import predict

    out, _ = multitask_run
    adapted = load_adapter(cuau, out / "adapter")
    merged = load_model(out / "merged_with_heads.model")  # the file wraps the model so MACE tools refuse it
    atoms = multitask_frames(1, seed=9)[0]
    a, b = predict(adapted, [atoms])[0], predict(merged, [atoms])[0]
    np.testing.assert_allclose(b.heads["spin"]["magmoms"], a.heads["spin"]["magmoms"], atol=1e-10)
    assert b.heads["lj"]["energy"] == pytest.approx(a.heads["lj"]["energy"], rel=1e-12)


def _recipe_dict(**heads_and_data):
    data = {"train": "x.xyz", **heads_and_data.pop("data", {})}
    return {"data": data, "adapters": [{"method": "sparse"}], **heads_and_data}


@pytest.mark.parametrize(
    "heads, data, message",
    [
        (
            [{"name": "spin", "kind": "magmom", "forces_key": "F"}],
            {},
            r"heads\[0\]: key\(s\) \['forces_key'\] do not apply to kind magmom",
        ),
        ([{"name": "2x", "kind": "magmom"}], {}, r"heads\[0\]\.name"),
        ([{"name": "foundation", "kind": "energy"}], {}, r"heads\[0\]\.name"),
        ([{"name": "s", "kind": "spin"}], {}, r"heads\[0\]\.kind: 'spin' is not one of"),
        ([{"name": "s", "kind": "magmom"}, {"name": "s", "kind": "energy"}], {}, "repeated"),
        ([{"name": "s", "kind": "magmom", "magmoms_weight": -1}], {}, r"heads\[0\]\.magmoms_weight"),
        ([{"name": "e", "kind": "energy", "E0s": "guess"}], {}, r"heads\[0\]\.E0s"),
        ([{"name": "s", "kind": "magmom", "hidden": 2.5}], {}, r"heads\[0\]\.hidden: expected an integer"),
        ([{"name": "s", "kind": "magmom", "constrain_total": "yes"}], {}, r"constrain_total: expected true or false"),
        ([{"name": "e", "kind": "energy"}], {"calculator_labels": "dft"}, "data.calculator_labels: 'dft'"),
    ],
)
def test_bad_head_recipes_name_the_path(heads, data, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(_recipe_dict(heads=heads, data=data))


def test_heads_without_adapters_are_allowed_but_nothing_is_not():
    recipe_from_dict({"data": {"train": "x.xyz"}, "heads": [{"name": "s", "kind": "magmom"}]})
    with pytest.raises(RecipeError, match="at least one adapter"):
        recipe_from_dict({"data": {"train": "x.xyz"}})


def test_bad_moment_labels_name_file_and_frame(tmp_path, cuau):
    frames = multitask_frames(4)
    frames[2].arrays["REF_magmoms"] = np.zeros((len(frames[2]), 3))
    ase.io.write(tmp_path / "bad.xyz", frames)
    torch.save(cuau, tmp_path / "tiny.model")
    (tmp_path / "r.yaml").write_text(recipe_text("tiny.model", "bad.xyz", "out") + MULTITASK_HEADS)
    from sparseft.data import DataError

    with pytest.raises(
        DataError, match=r"data.train: .*bad.xyz: frame 2: REF_magmoms has shape \(4, 3\), expected \(4,\)"
    ):
        run(load_recipe(tmp_path / "r.yaml"), quiet=True)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_head_without_training_labels_is_an_error(tmp_path, cuau):
    ase.io.write(tmp_path / "d.xyz", multitask_frames(6))
    torch.save(cuau, tmp_path / "tiny.model")
    heads = MULTITASK_HEADS.replace("kind: magmom", "kind: magmom\n    magmom_key: MISSING")
    (tmp_path / "r.yaml").write_text(recipe_text("tiny.model", "d.xyz", "out") + heads)
    from sparseft.data import DataError

    with pytest.raises(DataError, match=r"d\.xyz: heads\[1\]\.magmom_key 'MISSING' is in no frame .*REF_magmoms"):
        run(load_recipe(tmp_path / "r.yaml"), quiet=True)


def test_train_may_list_several_files_with_different_labels(tmp_path, cuau):
    """New labels in one file, replay of the foundation's level of theory in another."""
    frames = multitask_frames(12)
    new = [a.copy() for a in frames[:6]]
    replay = [a.copy() for a in frames[6:]]
    for atoms in new:  # only moments in the new file
        atoms.info.pop("REF_energy", None)
        atoms.arrays.pop("REF_forces", None)
    for atoms in replay:  # only foundation labels in the replay file
        atoms.arrays.pop("REF_magmoms", None)
    ase.io.write(tmp_path / "new.xyz", new)
    ase.io.write(tmp_path / "replay.xyz", replay)
    torch.save(cuau, tmp_path / "tiny.model")
    text = (
        recipe_text("tiny.model", "[new.xyz, replay.xyz]", "out", epochs=1) + "heads:\n  - {name: spin, kind: magmom}\n"
    )
    (tmp_path / "r.yaml").write_text(text)
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.data.train == [str(tmp_path / "new.xyz"), str(tmp_path / "replay.xyz")]
    recipe.output.evaluate_train = True  # the final evaluation skips train unless asked
    metrics = run(recipe, quiet=True)
    assert metrics["splits"]["train"]["spin.magmoms_mae"] is not None
    assert metrics["splits"]["train"]["forces_mae"] is not None
    bad = text.replace("[new.xyz, replay.xyz]", "[new.xyz, 3]")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(RecipeError, match="data.train: expected"):
        load_recipe(tmp_path / "bad.yaml")


def test_untrained_derivatives_are_skipped_without_changing_training(cuau):
    """Energy heads whose forces/stress do not train need no backward pass: same step, less work."""
    from sparseft.heads.setup import differentiated_heads

    weights = {"energy": 1.0, "forces": 10.0, "stress": 0.0, "lj.energy": 1.0, "lj.forces": 10.0, "lj.stress": 0.0}
    assert differentiated_heads(weights, {None: 0, "lj": 0}, {None: 5, "lj": 0}) == [None]  # lj: no force labels
    assert differentiated_heads({**weights, "forces": 0.0}, {None: 0, "lj": 0}, {None: 5, "lj": 3}) == ["lj"]
    assert differentiated_heads({**weights, "stress": 1.0}, {None: 2, "lj": 0}, {None: 0, "lj": 0}) == [None]

    frames = multitask_frames(8)
    for atoms in frames:  # no LJ forces anywhere: the lj head trains on energies only
        atoms.arrays.pop("LJ_forces", None)
    labelled = attach_labels(
        Frames("mt.xyz", frames, list(range(8))), Keys(), extra=[(HEAD_KEYS[0][1], False), HEAD_KEYS[1][1]]
    )
    params = []
    for derivative_heads in (None, [None]):
        torch.manual_seed(0)  # _adapted perturbs the moment head randomly
        adapted = _adapted(cuau)
        data = to_atomic_data(labelled, adapted, Keys(), heads=HEAD_KEYS)
        trainer = Trainer(
            adapted,
            data,
            [],
            TrainSection(epochs=1, batch_size=4),
            device="cpu",
            compute_stress=False,
            task_weights={"energy": 1.0, "forces": 10.0, "lj.energy": 1.0, "lj.forces": 10.0, "spin.magmoms": 1.0},
            derivative_heads=derivative_heads,
        )
        batch = next(iter(loader(data, 8, shuffle=False)))
        out = adapted(batch, training=True, compute_force=True, derivative_heads=derivative_heads)
        assert ("forces" in out["heads"]["lj"]) == (derivative_heads is None)  # really skipped
        trainer.fit()
        params.append(torch.cat([p.detach().reshape(-1) for p in adapted.trainable_parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=1e-10, atol=1e-12)
