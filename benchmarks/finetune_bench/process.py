"""One measured training process: its environment (threads), epoch-line timestamps (wall and
CPU), peak RSS, exit status and log."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import threading
import time
from pathlib import Path


def child_env(threads: int, extra_pythonpath: str | None) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_WAIT_POLICY="PASSIVE",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
        TQDM_DISABLE="1",
    )
    if extra_pythonpath:
        env["PYTHONPATH"] = extra_pythonpath + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


TIME_BIN = "/usr/bin/time"


def run_process(cmd: list[str], *, cwd: Path, env: dict, log_path: Path, epoch_pattern: str, timeout: float) -> dict:
    """Run one training process; timestamp its epoch lines; its peak RSS.

    Peak RSS comes from ``/usr/bin/time -f %M`` (GNU time forks a small process that then
    execs the command). ``ru_maxrss`` of a child forked straight from this (large) process
    would count the parent's pages the child shares between fork and exec."""
    regex = re.compile(epoch_pattern)
    stamps, tail = [], []
    rss_file = cwd / "peak_rss_kb.txt"
    use_time = os.access(TIME_BIN, os.X_OK)
    full_cmd = [TIME_BIN, "-f", "%M", "-o", str(rss_file), *cmd] if use_time else cmd
    start = time.perf_counter()
    load_before = os.getloadavg()
    proc = subprocess.Popen(
        full_cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    killed = threading.Event()
    target = _training_pid(proc.pid) if use_time else proc.pid
    cpu_stamps = []

    def kill():
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        with open(log_path, "w") as fh:
            for line in proc.stdout:
                now = time.perf_counter()
                fh.write(line)
                if regex.search(line):
                    stamps.append(now - start)
                    cpu_stamps.append(_cpu_seconds(target))
                tail.append(line)
                if len(tail) > 60:
                    tail.pop(0)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
    wall = time.perf_counter() - start
    rss_kb = usage.ru_maxrss
    if use_time:
        try:
            rss_kb = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
    return {
        "rc": proc.returncode,
        "timed_out": killed.is_set(),
        "wall_s": wall,
        "epoch_stamps_s": stamps,
        "epoch_cpu_stamps_s": cpu_stamps,
        "peak_rss_mb": rss_kb / 1024,
        "rss_source": "GNU time %M" if use_time else "wait4 ru_maxrss",
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "tail": "".join(tail[-30:]),
    }


def _training_pid(time_pid: int, wait_s: float = 5.0) -> int | None:
    """The process GNU time started (its only child)."""
    deadline = time.perf_counter() + wait_s
    path = Path(f"/proc/{time_pid}/task/{time_pid}/children")
    while time.perf_counter() < deadline:
        try:
            kids = path.read_text().split()
        except OSError:
            return None
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    return None


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a running process (threads included), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def epoch_seconds(stamps: list) -> float | None:
    """Median interval between consecutive epoch lines (None entries are skipped)."""
    diffs = [b - a for a, b in zip(stamps, stamps[1:]) if a is not None and b is not None]
    return statistics.median(diffs) if diffs else None
