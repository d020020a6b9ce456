"""What ran where: the machine, package versions, the git state, and which sparseft the
training processes import (the working tree, or a git snapshot of sparseft/)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from machine import cpu_model, installed_versions  # benchmarks/machine.py (run.py's folder is on sys.path)

from .config import REPO


def machine_info(threads: int) -> dict:
    cpu = cpu_model()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = installed_versions(("torch", "mace-torch", "e3nn", "ase", "numpy"))
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "memory": mem,
        "threads": threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


def git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "sparseft")
    return {"commit": git("rev-parse", "HEAD"), "sparseft_dirty": bool(dirty)}


def prepare_sparseft_source(spec: str, work: Path) -> tuple[str | None, str]:
    """``installed``: whatever ``import sparseft`` finds; ``git:REV``: a snapshot of sparseft/ at
    REV exported into the work dir and put first on the path (other people's uncommitted
    edits in the working tree then cannot change a run half-way)."""
    if spec == "installed":
        return None, "installed (working tree)"
    if not spec.startswith("git:"):
        raise SystemExit(f"--sparseft-source: expected 'installed' or 'git:REV', got {spec!r}")
    rev = spec[4:] or "HEAD"
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = work / "src" / commit[:12]
    if not (dest / "sparseft" / "__init__.py").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, "sparseft"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return str(dest), f"git snapshot of sparseft/ at {commit}"
