"""End-to-end fine-tunes on tiny data: outputs, refusals, resume after kill and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
from safetensors.torch import load_file

from sparseft._compat import torch
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace
from sparseft.train.checkpoint import find_checkpoint

from ..finetune_data import emt_frames, recipe_text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    ase.io.write(d / "data.xyz", emt_frames(24))
    return d


def _recipe(workdir, name, **train):
    path = workdir / f"{name}.yaml"
    path.write_text(recipe_text("tiny.model", "data.xyz", name, **train))
    return path


def test_finetune_writes_every_output_and_improves_forces(workdir):
    metrics = run(load_recipe(_recipe(workdir, "basic", epochs=6)), quiet=True)
    out = workdir / "basic"
    for name in (
        "recipe.yaml",
        "adapter/sparseft.json",
        "adapter/adapter.safetensors",
        "merged.model",
        "metrics.json",
        "history.csv",
        "learning_curves.png",
        "parity_energy.png",
        "parity_forces.png",
        "sparsity_map.png",
        "sparsity.json",
    ):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["splits"]["test"]["forces_mae"] < saved["base_zero_shot"]["test"]["forces_mae"]
    assert abs(metrics["density"] - 0.2) < 0.01
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 6
    assert not list(out.glob("*.tmp*"))


def test_non_empty_output_is_refused(workdir):
    path = _recipe(workdir, "refuse", epochs=1)
    (workdir / "refuse").mkdir()
    (workdir / "refuse" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        run(load_recipe(path), quiet=True)
    run(load_recipe(path), quiet=True, overwrite=True)
    assert (workdir / "refuse" / "mine.txt").read_text() == "user data"


def _adapter_tensors(directory):
    return load_file(str(directory / "adapter" / "adapter.safetensors"))


def _start(workdir, recipe, *extra):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(
        [sys.executable, "-m", "sparseft.cli", "finetune", str(recipe), "--quiet", *extra],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for_epoch(workdir, name, proc, epoch, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = find_checkpoint(workdir / name)
        if found is not None:
            try:
                if json.loads((found / "state.json").read_text())["state"]["epoch"] >= epoch:
                    return
            except (OSError, ValueError, KeyError):  # deleted meanwhile by the next checkpoint
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(workdir):
    settings = dict(epochs=30, target_density=0.2)
    run(load_recipe(_recipe(workdir, "whole", **settings)), quiet=True)
    recipe = _recipe(workdir, "killed", **settings)
    proc = _start(workdir, recipe)
    _wait_for_epoch(workdir, "killed", proc, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (workdir / "killed" / "metrics.json").exists(), "the run finished before it could be killed"
    run(load_recipe(recipe), resume=True, quiet=True)
    whole, resumed = _adapter_tensors(workdir / "whole"), _adapter_tensors(workdir / "killed")
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.allclose(whole[key].double(), resumed[key].double(), rtol=1e-9, atol=1e-12), key


@pytest.mark.slow
def test_ctrl_c_writes_a_checkpoint_and_resume_finishes(workdir):
    recipe = _recipe(workdir, "interrupted", epochs=30)
    proc = _start(workdir, recipe)
    _wait_for_epoch(workdir, "interrupted", proc, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"--resume" in err
    state = json.loads((find_checkpoint(workdir / "interrupted") / "state.json").read_text())["state"]
    assert state["step"] > 0
    metrics = run(load_recipe(recipe), resume=True, quiet=True)
    assert metrics["epochs"] == 30


def test_resume_without_checkpoint_is_refused(workdir):
    with pytest.raises(ValueError, match="no checkpoint"):
        run(load_recipe(_recipe(workdir, "fresh", epochs=1)), resume=True, quiet=True)


def test_data_errors_come_before_training(workdir):
    frames = emt_frames(4)
    frames[3][0].symbol = "Ag"
    ase.io.write(workdir / "bad.xyz", frames)
    path = workdir / "bad.yaml"
    path.write_text(recipe_text("tiny.model", "bad.xyz", "bad_out"))
    with pytest.raises(
        ValueError, match=r"data.train: .*bad.xyz: elements the base model does not know: Ag \(frames 3\)"
    ):
        run(load_recipe(path), quiet=True)
    assert not (workdir / "bad_out" / "checkpoint").exists()
    np.testing.assert_equal(len(ase.io.read(workdir / "bad.xyz", ":")), 4)


def test_missing_data_file_names_the_recipe_key(workdir):
    path = workdir / "missing.yaml"
    path.write_text(recipe_text("tiny.model", "nope.xyz", "missing_out"))
    with pytest.raises(ValueError, match=r"data.train: .*nope.xyz: no such data file"):
        run(load_recipe(path), quiet=True)


@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_outputs_follow_the_umask(workdir, umask):
    """Issue 21 item 10: the adapter and checkpoint folders (made through temporary folders for
    atomic writes) get the modes a plain mkdir/open gives, not mkdtemp's 0700."""
    name = f"umask{umask:03o}"
    previous = os.umask(umask)
    try:
        run(load_recipe(_recipe(workdir, name, epochs=1)), quiet=True)
    finally:
        os.umask(previous)
    out = workdir / name
    wrong = {
        str(p.relative_to(out)): oct(p.stat().st_mode & 0o777)
        for p in [out, *out.rglob("*")]
        if p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~umask
    }
    assert not wrong, f"modes other than the umask's {oct(umask)}: {wrong}"
