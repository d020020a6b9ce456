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


def test_md_example_takes_a_structure_file_and_checks_its_elements(tmp_path, capsys, monkeypatch):
    import ase.io
    import pytest
    from ase.build import bulk

    ase.io.write(tmp_path / "ni.xyz", bulk("Ni", "fcc", a=3.52, cubic=True))
    args = ["md.py", "--model", "embedded", "--steps", "3", "--out", str(tmp_path / "md.traj"), "--dtype", "float32"]
    monkeypatch.setattr("sys.argv", args + ["--structure", str(tmp_path / "ni.xyz")])
    runpy.run_path(str(EXAMPLES / "md.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "steps/s (4 atoms)" in out
    ase.io.write(tmp_path / "fe.xyz", bulk("Fe", "bcc", a=2.87, cubic=True))
    monkeypatch.setattr("sys.argv", args + ["--structure", str(tmp_path / "fe.xyz")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / "md.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert (
        "element Fe (atom 0) is not in the model; the model's elements are Al Ni Cu Pd Ag Pt Au"
        in capsys.readouterr().err
    )
