"""Data-parallel throughput: the same recipe (same global batch) under torchrun with 1, 2, ...
ranks; time per training epoch from each run's ``history.csv`` (start-up, E0 fitting and the
final evaluation excluded) and the speed-up over one rank.

    python benchmarks/ddp_scaling.py [--ranks 1,2] [--device cpu|cuda] [--epochs 2] [--batch-size 16]

The recipe: the embedded mini-foundation, the quick-start Cu-Au data (xTB labels), a sparse
adapter; float32, one torch thread per rank. Writes ``benchmarks/results/ddp_scaling.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model, installed_versions, usable_cores  # benchmarks/machine.py

REPO = Path(__file__).resolve().parents[1]
OUTPUT = Path(__file__).parent / "results" / "ddp_scaling.md"

RECIPE = """
base: {{model: embedded, dtype: float32, device: {device}}}
data: {{train: "embedded:train.xyz", valid: "embedded:valid.xyz", E0s: foundation}}
adapters: [{{method: sparse, l1: 0.3}}]
train: {{lr: 5.0e-3, epochs: {epochs}, batch_size: {batch}, target_density: 0.03, seed: 0}}
output: {{directory: {out}}}
"""


def run_once(tmp: Path, ranks: int, args) -> dict:
    out = tmp / f"ranks{ranks}"
    recipe = tmp / f"ranks{ranks}.yaml"
    recipe.write_text(RECIPE.format(device=args.device, epochs=args.epochs, batch=args.batch_size, out=out))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
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
        "--quiet",
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{ranks} ranks failed:\n{done.stderr[-3000:]}")
    wall = time.perf_counter() - t0
    with open(out / "history.csv") as fh:
        epochs = [float(row["seconds"]) for row in csv.DictReader(fh)]
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "ranks": ranks,
        "epoch_s": min(epochs),
        "epochs_s": epochs,
        "wall_s": wall,
        "valid_forces_mae": metrics["splits"]["valid"]["forces_mae"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16, help="the global batch (default 16)")
    p.add_argument("--output", default=str(OUTPUT))
    args = p.parse_args(argv)
    load_start = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in (int(r) for r in args.ranks.split(",")):
            results.append(run_once(Path(tmp), ranks, args))
            print(results[-1], flush=True)
    one = results[0]
    lines = [
        "# Data-parallel scaling (torchrun)",
        "",
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"`python benchmarks/ddp_scaling.py {' '.join(argv or sys.argv[1:])}`",
        "",
        f"- machine: {cpu_model()}, {usable_cores()} usable cores; device {args.device}; one torch thread per rank; "
        f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        "(a shared machine: other jobs compete for the cores)",
        f"- {', '.join(f'{k} {v}' for k, v in installed_versions(('torch', 'mace-torch')).items())}",
        f"- recipe: embedded mini-foundation, quick-start Cu-Au training data, sparse adapter, float32, "
        f"global batch {args.batch_size}, {args.epochs} epochs; the fastest epoch of each run",
        "",
        "| ranks | epoch s | speed-up | efficiency | valid force MAE (meV/Å) | wall s (incl. start-up) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        speedup = one["epoch_s"] / r["epoch_s"] * one["ranks"]
        lines.append(
            f"| {r['ranks']} | {r['epoch_s']:.1f} | {speedup:.2f}x | {speedup / r['ranks']:.0%} | "
            f"{1000 * r['valid_forces_mae']:.2f} | {r['wall_s']:.0f} |"
        )
    lines += ["", "The validation error is the same on every rank count (same global batch: the same training)."]
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
