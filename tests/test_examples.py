"""The examples run (shortened)."""

from __future__ import annotations

import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_python_api_example_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["python_api.py", "--steps", "6", "--out", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "python_api.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert (
        "PASS" in out and (tmp_path / "merged.model").is_file() and (tmp_path / "adapter" / "sparseft.json").is_file()
    )


def test_md_example_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "sys.argv",
        ["md.py", "--model", "embedded", "--steps", "4", "--out", str(tmp_path / "md.traj"), "--dtype", "float32"],
    )
    runpy.run_path(str(EXAMPLES / "md.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "energy drift" in out and (tmp_path / "md.traj").is_file()
