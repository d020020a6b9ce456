"""Installed, not cloned: `sparseft init`, `--version`, `python -m sparseft`, `inspect embedded`,
a lazy `import sparseft`, and (slow) a wheel installed into a fresh venv outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sparseft
from sparseft.cli import main
from sparseft.cli_init import TEMPLATES, template_path
from sparseft.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_import_help_and_init_do_not_load_torch_or_mace(tmp_path):
    code = (
        "import sys, sparseft, sparseft.cli; sparseft.cli.build_parser(); "
        f"assert sparseft.cli.main(['init', 'sparse', {str(tmp_path)!r}]) == 0; "
        "print(sorted(m for m in ('torch', 'mace', 'e3nn', 'ase', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "sparse.yaml").is_file()


def test_python_m_and_version():
    out = subprocess.run([sys.executable, "-m", "sparseft", "--version"], env=_env(), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"sparseft {sparseft.__version__}"
    out = subprocess.run([sys.executable, "-m", "sparseft", "finetune"], env=_env(), capture_output=True, text=True)
    assert out.returncode == 2 and "the following arguments are required: recipe" in out.stderr


def test_lazy_names_are_the_functions():
    import sparseft.predict  # noqa: F401  (importing the submodule must not shadow the function)

    assert callable(sparseft.predict) and sparseft.predict.__module__ == "sparseft.predict"
    assert callable(sparseft.blocks) and callable(sparseft.fingerprint)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sparseft.nope  # noqa: B018


@pytest.mark.parametrize("name", TEMPLATES)
def test_init_writes_a_recipe_that_loads(tmp_path, name, capsys):
    assert main(["init", name, str(tmp_path / "job")]) == 0
    path = tmp_path / "job" / f"{name}.yaml"
    assert f"next: sparseft finetune {path}" in capsys.readouterr().out
    recipe = load_recipe(path)
    assert recipe.base.model == "embedded"
    assert Path(recipe.output.directory).parent == tmp_path / "job"
    assert main(["init", name, str(tmp_path / "job")]) == 2  # no silent overwrite
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_quickstart_template_is_the_repository_recipe():
    repo = (ROOT / "recipes" / "quickstart.yaml").read_text().splitlines()
    shipped = template_path("quickstart").read_text().splitlines()
    differ = [(a, b) for a, b in zip(repo, shipped) if a != b]
    assert len(repo) == len(shipped) and len(differ) == 2  # the usage comment and the output directory
    assert all("quickstart" in a and "quickstart" in b for a, b in differ)


def test_inspect_embedded(capsys):
    assert main(["inspect", "embedded", "--group", "kind"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("embedded: ScaleShiftMACE")
    assert "frozen in the base model" not in out


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_quick_start(tmp_path):
    """Build the wheel, install it (no deps) into a new venv that sees the dependencies of this
    one through a .pth file, and run init + a 2-step fine-tune from a folder outside the repo."""
    import site
    import sysconfig

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True,
        cwd=tmp_path,
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if Path(p).is_dir()]
    (Path(purelib) / "deps.pth").write_text("\n".join(deps) + "\n")
    wheel = next(wheels.glob("sparseft-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", purelib, str(wheel)], check=True
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    where = subprocess.run(
        [python, "-c", "import sparseft; print(sparseft.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(purelib)
    job = tmp_path / "job"
    subprocess.run([python, "-m", "sparseft", "init", "quickstart", str(job)], env=env, cwd=tmp_path, check=True)
    run = subprocess.run(
        [
            python,
            "-m",
            "sparseft",
            "finetune",
            str(job / "quickstart.yaml"),
            "--quiet",
            "--set",
            "train.max_steps=2",
            "--set",
            "train.epochs=1",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (job / "quickstart-output" / "merged.model").is_file()
