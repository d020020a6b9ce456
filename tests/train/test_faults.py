"""Fault injection, not random timing: a kill at every filesystem step of a checkpoint write and
of the output writes, then resume; a full disk; failures before training leave nothing behind.

A forked child runs the write with every filesystem-changing call (``os.mkdir``, ``rename``,
``replace``, ``unlink``, ``rmdir``, opening a file for writing, safetensors' ``save_file``)
counted; at call ``k`` it dies with ``os._exit`` (no ``finally``, no cleanup: like SIGKILL),
before the call runs, or, for a file opened for writing or a tensor file, after a partial write.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import io
import json
import os
import shutil
import sys
import traceback

import ase.io
import pytest
from safetensors.torch import load_file

import sparseft.train.checkpoint as checkpoint
from sparseft._compat import torch
from sparseft.adapters import SparseConfig
from sparseft.data import Frames, Keys, to_atomic_data
from sparseft.model import wrap
from sparseft.recipe import TrainSection, load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace
from sparseft.train.checkpoint import find_checkpoint, load_checkpoint, remove_stale, save_checkpoint
from sparseft.train.trainer import Trainer, TrainState

from ..finetune_data import emt_frames, recipe_text

KILLED = 77
NEVER = 10**9
MUTATING = ("mkdir", "rename", "replace", "unlink", "rmdir")


def _arm(kill_at: int) -> list[int]:
    """Count filesystem-changing calls in this (child) process; the ``kill_at``-th one kills it."""
    calls = [0]

    def hit() -> bool:
        calls[0] += 1
        return calls[0] == kill_at

    def before(fn):
        def wrapped(*args, **kwargs):
            if hit():
                os._exit(KILLED)
            return fn(*args, **kwargs)

        return wrapped

    for name in MUTATING:
        setattr(os, name, before(getattr(os, name)))
    original_open = builtins.open

    def opening(file, mode="r", *args, **kwargs):
        f = original_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax+") and hit():
            os._exit(KILLED)  # the file exists, empty: killed while writing it
        return f

    builtins.open = io.open = opening
    original_save = checkpoint.save_file

    def save_file(tensors, filename, *args, **kwargs):
        if hit():
            original_save(tensors, filename, *args, **kwargs)
            with original_open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)  # killed half-way through the tensor file
            os._exit(KILLED)
        return original_save(tensors, filename, *args, **kwargs)

    checkpoint.save_file = save_file
    return calls


def in_child(fn, kill_at: int) -> tuple[int, int]:
    """Run ``fn()`` in a forked child armed to die at call ``kill_at``: (exit code, calls made)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            os.close(read)
            torch.set_num_threads(1)
            calls = _arm(kill_at)
            fn()
            os.write(write, str(calls[0]).encode())
            code = 0
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), int(reported or -1)


def _listing(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# ------------------------------------------------------------------------- checkpoint writes
@pytest.fixture(scope="module")
def trainers():
    """A writer trainer at two states A and B (their values), and a same-shaped reader."""
    base = tiny_mace(atomic_numbers=(29, 79), r_max=4.5)
    config = TrainSection(epochs=3, batch_size=4, lr=0.01, target_density=None, ema_decay=0.5)
    made = []
    for _ in range(2):
        adapted = wrap(copy.deepcopy(base), [SparseConfig(l1=0.1)])
        data = to_atomic_data(Frames("emt", emt_frames(8, stress=False), list(range(8))), adapted, Keys())
        made.append(
            Trainer(adapted, data[:6], data[6:], config, device="cpu", compute_stress=False, log=lambda _m: None)
        )
    writer, reader = made
    state_a = TrainState()
    writer._run_epoch(state_a)
    values_a = [p.detach().clone() for p in writer.params]
    state_b = copy.deepcopy(state_a)
    writer._run_epoch(state_b)
    values_b = [p.detach().clone() for p in writer.params]
    return writer, reader, {state_a.step: (state_a, values_a), state_b.step: (state_b, values_b)}


def test_a_kill_at_every_step_of_a_checkpoint_write_leaves_a_complete_one(trainers, tmp_path, one_thread):
    writer, reader, states = trainers
    (step_a, (state_a, _)), (step_b, (state_b, _)) = sorted(states.items())
    pristine = tmp_path / "pristine"
    with torch.no_grad():
        for p, v in zip(writer.params, states[step_a][1]):
            p.copy_(v)
    save_checkpoint(pristine, writer, state_a)
    with torch.no_grad():
        for p, v in zip(writer.params, states[step_b][1]):
            p.copy_(v)
    probe = tmp_path / "probe"
    shutil.copytree(pristine, probe)
    code, steps = in_child(lambda: save_checkpoint(probe, writer, state_b), NEVER)
    assert code == 0 and steps >= 8, (code, steps)  # temp dir, tensors, state, rename, pointer, cleanup ...

    resumed_from = []
    for k in range(1, steps + 2):
        folder = tmp_path / f"kill{k}"
        shutil.copytree(pristine, folder)
        code, _ = in_child(lambda folder=folder: save_checkpoint(folder, writer, state_b), k)
        assert code == (KILLED if k <= steps else 0), (k, code)
        found = find_checkpoint(folder)
        assert found is not None, f"kill at step {k}: no complete checkpoint in {_listing(folder)}"
        state = load_checkpoint(folder, reader)
        expected_state, expected_values = states[state.step]
        assert state.to_dict() == expected_state.to_dict()
        for p, v in zip(reader.params, expected_values):
            assert torch.equal(p.detach(), v), f"kill at step {k}: parameters differ from the saved state"
        remove_stale(folder)  # what --resume does
        left = _listing(folder / "checkpoint")
        assert sorted(x for x in left if "/" not in x) == ["LATEST", found.name], (k, left)
        resumed_from.append(state.step)
    assert set(resumed_from) == {step_a, step_b}  # some kills keep A, the later ones already have B
    assert resumed_from[-1] == step_b


def test_a_failing_checkpoint_write_keeps_the_last_one_and_cleans_up(trainers, tmp_path, monkeypatch):
    import errno

    writer, reader, states = trainers
    (_, (state_a, _)), (_, (state_b, _)) = sorted(states.items())
    save_checkpoint(tmp_path, writer, state_a)
    before = _listing(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError) as caught:
        save_checkpoint(tmp_path, writer, state_b)
    assert caught.value.errno == errno.ENOSPC and "checkpoint" in caught.value.filename
    assert _listing(tmp_path) == before  # the temporary folder is gone, the old checkpoint intact
    assert load_checkpoint(tmp_path, reader).step == state_a.step


def test_resume_recovers_from_a_checkpoint_that_latest_does_not_name(trainers, tmp_path):
    writer, reader, states = trainers
    (_, (state_a, _)), (_, (state_b, _)) = sorted(states.items())
    save_checkpoint(tmp_path, writer, state_a)
    newest = save_checkpoint(tmp_path, writer, state_b)
    (tmp_path / "checkpoint" / "LATEST").write_text("step-garbage\n")
    assert find_checkpoint(tmp_path) == newest
    (newest / "tensors.safetensors").write_bytes(b"damaged")
    assert find_checkpoint(tmp_path) is None  # the only one left is damaged: nothing to resume from


# ------------------------------------------------------------------------- output writes
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny fine-tune (the reference outputs) and its recipe."""
    d = tmp_path_factory.mktemp("faults")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    ase.io.write(d / "data.xyz", emt_frames(12))
    recipe = d / "ref.yaml"
    recipe.write_text(recipe_text("tiny.model", "data.xyz", "ref", epochs=2))
    torch.set_num_threads(1)
    run(load_recipe(recipe), quiet=True)
    return d


def _same_outputs(reference, other):
    ref, got = (
        load_file(str(reference / "adapter" / "adapter.safetensors")),
        load_file(str(other / "adapter" / "adapter.safetensors")),
    )
    assert ref.keys() == got.keys()
    for key in ref:
        assert torch.equal(ref[key], got[key]), key
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (reference, other))
    for volatile in ("wall_time_s", "peak_memory_mb"):
        a.pop(volatile), b.pop(volatile)
    assert a == b
    assert (reference / "history.csv").read_text() == (other / "history.csv").read_text()
    names = lambda d: sorted(p.name for p in d.iterdir() if p.name != "recipe.yaml")  # noqa: E731
    assert names(reference) == names(other)
    assert not [p for p in other.rglob(".*") if p.name != ".gitkeep"], _listing(other)


def _output_kills(finished, tmp_path, which):
    """Kill the output phase of a resumed, finished run at the steps ``which(n)`` picks, resume
    in this process, and compare with the uninterrupted outputs."""

    def copy_run(name):
        target = finished / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(finished / "ref", target)
        recipe = finished / f"{name}.yaml"
        recipe.write_text(recipe_text("tiny.model", "data.xyz", name, epochs=2))
        return load_recipe(recipe)

    probe = copy_run("probe")
    code, steps = in_child(lambda: run(probe, resume=True, quiet=True), NEVER)
    assert code == 0 and steps >= 10, (code, steps)
    for k in which(steps):
        recipe = copy_run(f"kill{k}")
        code, _ = in_child(lambda recipe=recipe: run(recipe, resume=True, quiet=True), k)
        assert code == KILLED, (k, code)
        run(recipe, resume=True, quiet=True)
        _same_outputs(finished / "ref", finished / f"kill{k}")


def test_a_kill_while_outputs_are_written_is_recovered_by_resume(finished, tmp_path, one_thread):
    _output_kills(finished, tmp_path, lambda n: [n // 2])


@pytest.mark.slow
def test_a_kill_at_every_step_of_the_output_writes_is_recovered_by_resume(finished, tmp_path, one_thread):
    _output_kills(finished, tmp_path, lambda n: range(1, n + 1))


# ------------------------------------------------------------------------- disk full, failed starts
def test_disk_full_while_writing_outputs_names_the_file_and_keeps_the_checkpoint(finished, monkeypatch, capsys):
    import errno

    import sparseft.files

    target = finished / "full"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(finished / "ref", target)
    (finished / "full.yaml").write_text(recipe_text("tiny.model", "data.xyz", "full", epochs=2))
    kept = find_checkpoint(target)
    real = sparseft.files.save_torch

    def full(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sparseft.files, "save_torch", full)  # the backend writes merged.model with it
    from sparseft.cli import main

    assert main(["finetune", str(finished / "full.yaml"), "--resume", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sparseft: error: no space left on device while writing ") and "merged.model" in err
    assert find_checkpoint(target) == kept
    assert not list(target.glob(".*tmp*"))
    monkeypatch.setattr("sparseft.files.save_torch", real)
    assert main(["finetune", str(finished / "full.yaml"), "--resume", "--quiet"]) == 0
    _same_outputs(finished / "ref", target)


def test_a_run_that_fails_in_its_first_epoch_leaves_nothing(finished, monkeypatch):
    frames = emt_frames(6)
    ase.io.write(finished / "d6.xyz", frames)
    (finished / "nan.yaml").write_text(recipe_text("tiny.model", "d6.xyz", "nan_out", epochs=2))
    monkeypatch.setattr("sparseft.train.trainer.total_loss", lambda terms, weights: torch.tensor(float("nan")))
    with pytest.raises(
        FloatingPointError, match=r"step 0: the training loss is nan on a batch of frames .*d6\.xyz: frame \d"
    ):
        run(load_recipe(finished / "nan.yaml"), quiet=True)
    assert not (finished / "nan_out").exists()


def test_cli_reports_a_diverged_run_with_exit_1(finished, monkeypatch, capsys):
    from sparseft.cli import main

    monkeypatch.setattr("sparseft.train.trainer.total_loss", lambda terms, weights: torch.tensor(float("inf")))
    (finished / "inf.yaml").write_text(recipe_text("tiny.model", "data.xyz", "inf_out", epochs=2))
    assert main(["finetune", str(finished / "inf.yaml"), "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("sparseft: error: step 0: the training loss is inf on a batch of frames ")
    assert not any("Traceback" in line for line in lines)
    assert not (finished / "inf_out").exists()


def test_real_full_disk(finished, tmp_path):
    """A real full file system (a 200 kB tmpfs; needs root): the run says so, in one line, and a
    later --resume on a roomier disk finishes it."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        from sparseft.cli import main

        (finished / "small.yaml").write_text(recipe_text("tiny.model", "data.xyz", str(mount / "run"), epochs=2))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["finetune", str(finished / "small.yaml"), "--quiet"])
        last = err.getvalue().strip().splitlines()[-1]
        assert code == 1 and last.startswith("sparseft: error: no space left on device while writing "), err.getvalue()
        assert "Traceback" not in err.getvalue()
        assert not [p for p in mount.rglob(".*tmp*")], _listing(mount)
        if find_checkpoint(mount / "run") is not None:  # the disk filled after a checkpoint: it resumes elsewhere
            shutil.copytree(mount / "run", tmp_path / "moved")
            (finished / "moved.yaml").write_text(
                recipe_text("tiny.model", "data.xyz", str(tmp_path / "moved"), epochs=2)
            )
            assert main(["finetune", str(finished / "moved.yaml"), "--resume", "--quiet"]) == 0
            assert (tmp_path / "moved" / "metrics.json").is_file()
    finally:
        subprocess.run(["umount", str(mount)], check=True)
