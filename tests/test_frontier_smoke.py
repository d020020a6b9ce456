"""Smoke test of the frontier benchmark (benchmarks/frontier, issue 20): the runner end to end on a
tiny MACE (2 methods x 1 lr x 2 steps, two subprocesses at a time), then the report generator."""

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sparseft.testing.tiny import tiny_mace

REPO = Path(__file__).resolve().parent.parent
FRONTIER = REPO / "benchmarks" / "frontier"
DOMAIN = REPO / "sparseft" / "embedded" / "domain" / "train.xyz"


@pytest.mark.skipif(
    not (REPO / ".venv" / "bin" / "sparseft").exists() and not os.environ.get("SPARSEFT_BIN"),
    reason="needs the sparseft console script",
)
def test_frontier_runner_and_report_end_to_end(tmp_path):
    from ase.io import read, write

    torch.save(tiny_mace(atomic_numbers=(29, 79), r_max=4.5, hidden_irreps="4x0e+4x1o"), tmp_path / "tiny.model")
    write(tmp_path / "frames.xyz", read(DOMAIN, ":10"), format="extxyz")
    sets = {
        "tiny": {
            "description": "10 Cu-Au frames of the embedded domain set",
            "source": str(tmp_path / "frames.xyz"),
            "batch_size": 3,
            "model": str(tmp_path / "tiny.model"),
        }
    }
    (tmp_path / "sets.json").write_text(json.dumps(sets))
    runs, data = tmp_path / "runs", tmp_path / "data"
    sparseft = os.environ.get("SPARSEFT_BIN", str(REPO / ".venv" / "bin" / "sparseft"))
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, str(FRONTIER / "run.py"), "--sets-json", str(tmp_path / "sets.json"), "--sets", "tiny",
        "--methods", "sparse-3,lora-r1", "--lrs", "0.01", "--max-steps", "2", "--patience", "1", "--no-extend",
        "--dtype", "float64", "--jobs", "2", "--runs-dir", str(runs), "--data-dir", str(data), "--sparseft", shlex.quote(sparseft),
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    results = [json.loads(p.read_text()) for p in runs.glob("*/results.json")]
    assert len(results) == 2
    assert all(r["status"] == "ok" for r in results), [r.get("log_tail") for r in results]
    for r in results:
        assert r["steps"] == 2 and r["adapter_bytes"] > 0 and r["changed_parameters"] > 0
        assert r["zero_shot"]["test"]["forces_mae"] > 0
        assert len(r["valid_forces_curve"]) == r["epochs"] and all(x > 0 for x in r["valid_forces_curve"])
    assert not list(runs.glob("*/out/checkpoint"))  # bulky outputs pruned
    shown = subprocess.run(
        [sys.executable, str(FRONTIER / "run.py"), "--runs-dir", str(runs), "--show-recipe", results[0]["id"]],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0 and yaml.safe_load(shown.stdout) == results[0]["recipe"], shown.stderr

    out = tmp_path / "results" / "frontier.md"
    done = subprocess.run(
        [sys.executable, str(FRONTIER / "report.py"), "--runs-dir", str(runs), "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    assert "| method | lr | seeds | test F MAE (meV/Å)" in text
    assert "| sparse-3 | 0.01 | 1 |" in text and "| lora-r1 | 0.01 | 1 |" in text
    assert "Zero-shot" in text
    png = tmp_path / "results" / "frontier-tiny.png"
    assert png.exists() and png.stat().st_size > 1000
    spec = importlib.util.spec_from_file_location("frontier_report", FRONTIER / "report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)  # the script puts its own folder on sys.path (for common.py)
    convergence_lines = report.convergence_lines
    run = {
        "id": "x",
        "set": "s",
        "device": "cpu",
        "max_steps": 8,
        "best_epoch": 7,
        "valid_forces_curve": [0.08, 0.06, 0.05, 0.045, 0.044, 0.041, 0.040, 0.041],
    }
    lines = convergence_lines([run, dict(run, id="z", max_steps=4)])  # z: not the set's longest budget
    assert not any("`z`" in line for line in lines)
    assert lines and "| `x` | 8 | 7 | 60.0 | 45.0 | 41.0 | 40.0 | 2.4 % |" in lines, lines
    assert (
        convergence_lines(
            [{"id": "y", "set": "s", "device": "cpu", "max_steps": 8, "best_epoch": 1, "valid_forces_curve": [0.1]}]
        )
        == []
    )
    # about 30 CPU s in all (two sparseft processes in parallel): < 30 s wall on an idle 2-core
    # machine; not asserted, wall time depends on the load
