"""The README's "Installed with pip (no clone)" path, run as written (issue 21, item 11): a wheel
built from the sources, a fresh plain venv (no system site-packages), no clone in reach, and
the quick start from the package alone.

Two substitutions, both for this offline machine: the CPU-torch line installs the same torch
from the local wheel folder (``pip install torch==2.13.0``), and the fine-tune stops after two
steps (``--set train.max_steps=2``). The wheel file is copied into the folder the commands run
in, so the README's ``pip install sparseft-<version>-py3-none-any.whl`` runs literally.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "### Installed with pip (no clone)"


def readme_pip_commands() -> list[str]:
    """The command lines of the first bash block under :data:`SECTION` (comments dropped)."""
    text = (REPO / "README.md").read_text()
    after = text[text.index(SECTION) :]
    block = re.search(r"```bash\n(.*?)```", after, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_pip_block_needs_no_clone():
    commands = readme_pip_commands()
    assert not [c for c in commands if "./" in c or "recipes/" in c], commands  # nothing from a clone
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert f"pip install sparseft-{version}-py3-none-any.whl" in commands, commands  # the wheel pip wheel builds
    first_pip = next(i for i, c in enumerate(commands) if c.startswith("pip "))
    assert any("-m venv" in c and "activate" in c for c in commands[:first_pip]), commands  # a fresh venv first


@pytest.mark.slow
def test_the_readme_pip_path_runs_from_a_wheel_without_a_clone(tmp_path):
    assert REPO not in tmp_path.parents
    src = tmp_path / "src"  # what the wheel is built from (building in the clone would leave build/ there)
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "sparseft", src / "sparseft", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(dist)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("sparseft-*.whl")
    names = zipfile.ZipFile(wheel).namelist()  # as the README says: templates and embedded data, no recipes/
    assert {"sparseft/templates/quickstart.yaml", "sparseft/embedded/foundation.safetensors"} <= set(names)
    assert not [n for n in names if n.startswith("recipes/")]
    work = tmp_path / "work"  # where the README's commands run: the wheel and nothing else
    work.mkdir()
    shutil.copy(wheel, work / wheel.name)

    script = ["set -ex"]
    for command in readme_pip_commands():
        if command.startswith("pip install torch"):
            command = "pip install -q torch==2.13.0"  # offline: the local wheel folder serves the CPU build
        elif command.startswith("sparseft finetune"):
            command += " --set train.max_steps=2"
        script.append(command)
    # the package that ran is the venv's, not a clone's
    script.append("python -c \"import sparseft, sys; print('IMPORTED', sparseft.__file__, sys.prefix)\"")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["PIP_REQUIRE_VIRTUALENV"] = "1"  # a block without its venv must fail, not install into a system Python
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("IMPORTED")]
    _, module, prefix = line.split()
    assert Path(prefix).resolve().is_relative_to(work.resolve()), line  # the README's fresh venv
    assert Path(module).resolve().is_relative_to(Path(prefix).resolve()), line  # installed there, not a clone
    outputs = work / "job" / "quickstart-output"
    assert (outputs / "metrics.json").is_file() and (outputs / "merged.model").is_file()
