"""Timed child processes for the benchmark scripts: one run's wall and CPU time (its own rusage,
through ``os.wait4``) with the load average before and after, and a pool running many, ``jobs`` at
a time. Shared by the scripts in this folder (which put it on ``sys.path``)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


def threads_env(n: int) -> dict[str, str]:
    """The environment of a benchmark child: ``n`` math-library threads, OpenMP threads that do not spin."""
    return {
        **{k: str(n) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        "OMP_WAIT_POLICY": "PASSIVE",
    }


ONE_THREAD = threads_env(1)  # what every CPU benchmark child runs with


@dataclass(frozen=True)
class Finished:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system time of the child (and its waited-for children)
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]


def run_timed(
    argv: list[str], log_path: Path, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> Finished:
    """Run ``argv`` to its end, stdout and stderr to ``log_path``; ``env`` is added to this
    process's environment."""
    load0 = os.getloadavg()
    t0 = time.time()
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return Finished(proc.returncode, time.time() - t0, usage.ru_utime + usage.ru_stime, load0, os.getloadavg())


def run_pool(fn: Callable, items: Iterable, jobs: int) -> list:
    """``fn(item)`` for each item (each call runs one child: ``run_timed``), ``jobs`` at a time, in
    the items' order."""
    with cf.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(fn, items))
