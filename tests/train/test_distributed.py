"""Data-parallel fine-tuning with real torch.distributed processes (torchrun, gloo on CPU):
a 2-rank run trains the same adapter (and extra energy head) as a 1-rank run with the same
global batch, only rank 0 writes, and a run killed under 2 ranks resumes under 2 ranks (or 1)
to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import pytest
from safetensors.torch import load_file

from sparseft._compat import torch
from sparseft.data import loader
from sparseft.recipe import load_recipe
from sparseft.run import run
from sparseft.testing.tiny import tiny_mace
from sparseft.train import distributed as ddp
from sparseft.train.checkpoint import find_checkpoint

from ..finetune_data import emt_frames, recipe_text

AUDIT = Path(__file__).parent / "audit"
REPO = Path(__file__).resolve().parents[2]


def test_global_batches_follow_the_one_process_loader_order():
    data = [{"positions": torch.zeros(1, 3), "frame": torch.tensor([i])} for i in range(11)]  # graph items
    for seed in (0, 7):
        expected = [b["frame"].tolist() for b in loader(data, 4, shuffle=True, seed=seed)]
        assert ddp.global_batches(11, 4, shuffle=True, seed=seed) == expected
    assert ddp.global_batches(5, 2, shuffle=False, seed=0) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_rank_shares_partition_each_global_batch(world):
    for batch in ddp.global_batches(10, 3, shuffle=True, seed=1):
        shares = [ddp.rank_share(batch, r, world) for r in range(world)]
        assert sorted(i for s in shares for i in s) == sorted(batch)
        assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_backend_follows_the_device():
    assert ddp.backend_for("cpu") == "gloo"
    assert ddp.backend_for("cuda:1") == "nccl"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5), d / "tiny.model")
    ase.io.write(d / "data.xyz", emt_frames(12))  # 12 frames -> 7 train, 2 valid, 3 test
    return d


def _recipe(workdir: Path, name: str, **train) -> Path:
    # global batch 3 over 7 frames: batches of 3, 3 and 1 -> uneven shares and an empty one
    settings = {"batch_size": 3, "epochs": 3, "target_density": 0.3, "ema_decay": 0.9, **train}
    path = workdir / f"{name}.yaml"
    path.write_text(
        recipe_text("tiny.model", "data.xyz", name, **settings).replace("base:\n", "base:\n  dtype: float64\n")
    )
    return path


def _torchrun(workdir: Path, recipe: Path, *extra: str, ranks: int = 2, audit: Path | None = None):
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(AUDIT), str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    if audit is not None:
        audit.mkdir(exist_ok=True)
        env.update(SPARSEFT_AUDIT_LOG=str(audit), SPARSEFT_AUDIT_WATCH=str(workdir))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        "-m",
        "sparseft",
        "finetune",
        str(recipe),
        *extra,
    ]
    return subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def _finish(proc, timeout=600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


def _adapter(directory: Path) -> dict:
    return load_file(str(directory / "adapter" / "adapter.safetensors"))


def _assert_same_adapter(a: dict, b: dict, rtol: float = 1e-6):
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith(("indices", "index_gaps", "fixed_support")):
            assert torch.equal(a[key], b[key]), key
            continue
        x, y = a[key].double(), b[key].double()
        scale = max(float(x.norm()), 1e-30)
        assert float((x - y).norm()) <= rtol * scale, (key, float((x - y).norm()) / scale)


@pytest.mark.slow  # ~50 s: a 1-rank run and a 2-rank torchrun
def test_two_ranks_train_the_one_rank_adapter_and_only_rank_0_writes(workdir):
    run(load_recipe(_recipe(workdir, "one")), quiet=True)
    audit = workdir / "audit_two"
    out = _finish(_torchrun(workdir, _recipe(workdir, "two"), audit=audit))
    assert out.count("epoch 3/3") == 1, out  # logs come from rank 0 alone
    assert "data-parallel: 2 ranks (gloo)" in out
    one, two = _adapter(workdir / "one"), _adapter(workdir / "two")
    assert any(k.endswith("fixed_support") for k in one), "the support was never fixed"
    _assert_same_adapter(one, two)
    m1, m2 = (json.loads((workdir / n / "metrics.json").read_text()) for n in ("one", "two"))
    assert m2["changed_parameters"] == m1["changed_parameters"]
    # the fixed support was compacted on every rank: parameters only over the support
    assert m2["trainable_parameters"] == m1["trainable_parameters"] < m1["selected_parameters"]
    assert (
        abs(m2["splits"]["test"]["forces_mae"] - m1["splits"]["test"]["forces_mae"])
        <= 1e-6 * m1["splits"]["test"]["forces_mae"]
    )
    h1, h2 = ((workdir / n / "history.csv").read_text().splitlines() for n in ("one", "two"))
    assert [r.split(",")[:2] for r in h1] == [r.split(",")[:2] for r in h2]
    writes = {p.name: p.read_text() for p in audit.iterdir()}
    assert set(writes) >= {"rank0.log"}, writes.keys()
    assert "merged.model" in writes["rank0.log"] and "checkpoint" in writes["rank0.log"]
    assert not writes.get("rank1.log"), writes.get("rank1.log")


@pytest.mark.slow  # ~15 s each
@pytest.mark.parametrize("mode", ["str_scheduled", "gradual"])
def test_two_ranks_match_one_rank_in_other_sparse_modes(workdir, mode):
    """After the support is fixed, str_scheduled's thresholds stop training (DDP stalled on parameters
    without gradient) and gradual's moments carry over the compaction, on every rank alike."""
    names = (f"{mode}1", f"{mode}2")
    for name in names:
        text = _recipe(workdir, name).read_text().replace("    l1: 1.0e-3\n", f"    l1: 1.0e-3\n    mode: {mode}\n")
        assert f"mode: {mode}" in text
        (workdir / f"{name}.yaml").write_text(text)
    run(load_recipe(workdir / f"{names[0]}.yaml"), quiet=True)
    _finish(_torchrun(workdir, workdir / f"{names[1]}.yaml"))
    one, two = (_adapter(workdir / name) for name in names)
    assert any(k.endswith("fixed_support") for k in one), sorted(one)
    _assert_same_adapter(one, two)


def _wait_for_epoch(directory: Path, proc, epoch: int, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = find_checkpoint(directory)
        try:
            if found is not None and json.loads((found / "state.json").read_text())["state"]["epoch"] >= epoch:
                return
        except (OSError, ValueError, KeyError):  # deleted meanwhile by the next checkpoint
            pass
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared")


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (torchrun starts its ranks in new sessions)."""
    children = {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    for child in children:
        _kill_tree(child)
    os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.parametrize("kill_epoch", [2, 30], ids=["before-the-fix", "after-the-fix"])
def test_killed_two_rank_run_resumes_under_two_ranks_and_under_one(workdir, kill_epoch):
    """Killed before the support is fixed (the resumed run fixes and compacts it), or after (the
    checkpoint holds the compacted parts: the support is fixed at step 84 of 120, in epoch 28)."""
    settings = dict(epochs=40)
    if not (workdir / "whole" / "metrics.json").exists():  # one uninterrupted run for both
        run(load_recipe(_recipe(workdir, "whole", **settings)), quiet=True)
    for name, resume_ranks in ((f"killed2-{kill_epoch}", 2), (f"killed1-{kill_epoch}", 1)):
        recipe = _recipe(workdir, name, **settings)
        proc = _torchrun(workdir, recipe)
        _wait_for_epoch(workdir / name, proc, kill_epoch)
        _kill_tree(proc.pid)  # torchrun and both ranks at once, as a crashed node would
        proc.communicate()
        assert not (workdir / name / "metrics.json").exists(), "the run finished before it could be killed"
        saved = load_file(str(find_checkpoint(workdir / name) / "tensors.safetensors"))
        assert any(k.startswith("support/") for k in saved) == (kill_epoch > 28)
        if resume_ranks == 2:
            out = _finish(_torchrun(workdir, recipe, "--resume"))
            assert "on 2 ranks" in out
        else:
            run(load_recipe(recipe), resume=True, quiet=True)
        _assert_same_adapter(_adapter(workdir / "whole"), _adapter(workdir / name))


ENERGY_HEAD = """
heads:
  - name: lj
    kind: energy
    energy_key: LJ_energy
    forces_key: LJ_forces
    E0s: average
"""


@pytest.mark.slow  # ~16 s each: a 1-rank run and a 2-rank torchrun
@pytest.mark.parametrize("magmom", [False, True], ids=["energy-head", "energy-and-magmom-heads"])
def test_two_ranks_train_the_one_rank_adapter_and_heads(workdir, magmom):
    """An extra energy head (its own E0s, LJ labels on only some frames; with a moment head too)
    under DDP: the trunk's adapter, the heads' weights and the E0 buffers equal the 1-rank run's."""
    from ..finetune_data import MULTITASK_HEADS, multitask_frames

    ase.io.write(workdir / "lj.xyz", multitask_frames(12, seed=2))  # LJ labels on 2 of 3 frames, some no EMT energy
    names = ("moments1", "moments2") if magmom else ("head1", "head2")
    for name in names:
        text = _recipe(workdir, name).read_text().replace("data.xyz", "lj.xyz")
        (workdir / f"{name}.yaml").write_text(text + (MULTITASK_HEADS if magmom else ENERGY_HEAD))
    run(load_recipe(workdir / f"{names[0]}.yaml"), quiet=True)
    _finish(_torchrun(workdir, workdir / f"{names[1]}.yaml"))
    one, two = (_adapter(workdir / name) for name in names)
    assert any(k.startswith("heads/lj/") for k in one) and any(k.endswith("fixed_support") for k in one), sorted(one)
    _assert_same_adapter(one, two)
    m1, m2 = (json.loads((workdir / n / "metrics.json").read_text()) for n in names)
    for split in ("valid", "test"):
        x, y = m1["splits"][split]["lj.forces_mae"], m2["splits"][split]["lj.forces_mae"]
        assert abs(x - y) <= 1e-6 * x, (split, x, y)
        assert x < m1["base_zero_shot"][split]["lj.forces_mae"], "the head must train"
        if magmom:
            x, y = m1["splits"][split]["spin.magmoms_mae"], m2["splits"][split]["spin.magmoms_mae"]
            assert abs(x - y) <= 1e-6 * x, (split, x, y)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_under_torchrun_leaves_a_complete_checkpoint_and_one_line(workdir):
    """SIGINT to torchrun's process group (Ctrl-C in its terminal): torchrun passes it to the
    ranks, which stop after the same step; rank 0 writes a checkpoint and prints one line
    (torchrun then reports the signal itself); only complete files remain, and --resume finishes."""
    recipe = _recipe(workdir, "ctrlc", epochs=30)
    proc = _torchrun(workdir, recipe)
    _wait_for_epoch(workdir / "ctrlc", proc, 1)
    ranks = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    err = err.decode()
    assert proc.returncode != 0 and not any(_alive(pid) for pid in ranks), err[-3000:]
    ours = [line for line in err.splitlines() if line.startswith("sparseft:")]
    assert len(ours) == 1 and ours[0].startswith("sparseft: interrupted at step") and "--resume" in ours[0], err
    assert "/sparseft/" not in "".join(line for line in err.splitlines() if line.lstrip().startswith('File "')), err
    out = workdir / "ctrlc"
    assert {p.name for p in out.iterdir()} <= {"checkpoint", "recipe.yaml", "train.log"}
    found = find_checkpoint(out)
    assert found is not None and {p.name for p in (out / "checkpoint").iterdir()} == {"LATEST", found.name}
    assert "stopped: Interrupted" in (out / "train.log").read_text()
    assert run(load_recipe(recipe), resume=True, quiet=True)["epochs"] == 30
