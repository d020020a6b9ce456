"""What machine a benchmark ran on: CPU model, usable cores, installed package versions.
Shared by the benchmark scripts in this folder (which put it on ``sys.path``)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def installed_versions(packages) -> dict[str, str]:
    """Version of each installed package of ``packages``; missing ones are left out."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
