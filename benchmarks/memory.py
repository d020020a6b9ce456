"""Peak memory (max RSS) of fine-tuning runs, side by side with mace_run_train.

Every run is its own process (one torch thread); its peak RSS comes from ``wait4``.

- ``81-atom set``: the kind of set the issue reported (81-atom cells, a 64x0e+64x1o float64
  ScaleShiftMACE, 100 training frames, batch 4, stress trained): sparseft full and sparse
  fine-tuning with ``E0s: estimated`` and ``E0s: foundation``, and ``mace_run_train`` (naive
  fine-tuning of the same file, same E0s, batch and loss). The model has random weights
  (mace's own classes): memory depends on its shape, not on its values. Training is cut to 5
  steps (the peak of a step does not grow with more steps; this 2-core machine is shared):
  sparseft with ``train.max_steps: 5`` on the 100 frames (E0 estimation sees all 100),
  mace_run_train one epoch of the first 20 frames (5 steps); both then evaluate the 10
  validation frames.
- ``E0 estimation``: only ``E0s: estimated`` on 30 of those frames, with this tree's batched,
  energies-only ``predict`` and (``--before DIR``) with an older sparseft checkout.
- ``shipped recipes``: ``recipes/quickstart.yaml`` and the ``sparseft init`` templates on the
  embedded data, shortened to a few steps (peak memory is reached in the first steps and in the
  final evaluation, not later).

    python benchmarks/memory.py [--before /path/to/old/sparseft/checkout] [--out benchmarks/results/memory.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


def run_process(command: list[str], env: dict, cwd: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one child process."""
    started = time.perf_counter()
    with open(cwd / f"log-{int(started * 1000)}.txt", "w") as log:
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    return usage.ru_maxrss / 1024, time.perf_counter() - started, os.waitstatus_to_exitcode(status)


def make_set(work: Path, n_train: int = 100, n_valid: int = 10) -> dict:
    """81-atom Ni/Cu/Au fcc cells (primitive cell x (3, 3, 9)), strained and rattled, EMT labels
    with stress; and the 64x0e+64x1o float64 model, saved for both tools."""
    import ase.io
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from sparseft._compat import torch
    from sparseft.e0s import current_e0s
    from sparseft.testing.tiny import tiny_mace

    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_train + n_valid):
        atoms = bulk("Cu", "fcc", a=3.61).repeat((3, 3, 9))
        atoms.numbers[rng.random(len(atoms)) < 0.25] = 79
        atoms.numbers[rng.random(len(atoms)) < 0.1] = 28
        atoms.set_cell(atoms.cell * (1 + rng.uniform(-0.02, 0.02)), scale_atoms=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.info["REF_stress"] = atoms.get_stress(voigt=False)
        atoms.calc = None
        frames.append(atoms)
    ase.io.write(work / "train.xyz", frames[:n_train])
    ase.io.write(work / "valid.xyz", frames[n_train:])
    ase.io.write(work / "e0.xyz", frames[:30])
    ase.io.write(work / "train20.xyz", frames[:20])
    model = tiny_mace(
        hidden_irreps="64x0e+64x1o", atomic_numbers=(28, 29, 79), r_max=5.0, dtype=torch.float64, num_interactions=2
    )
    torch.save(model, work / "foundation.model")
    return {"e0s": current_e0s(model), "atoms": len(frames[0])}


def sparseft_recipe(work: Path, name: str, method: str, e0s: str, epochs: int = 1) -> Path:
    text = f"""base: {{model: foundation.model, dtype: float64, device: cpu}}
data: {{train: train.xyz, valid: valid.xyz, E0s: {e0s}}}
adapters: [{{method: {method}}}]
train: {{lr: 1.0e-3, epochs: {epochs}, max_steps: 5, batch_size: 4, energy_weight: 1.0, forces_weight: 10.0, stress_weight: 1.0,
        target_density: {0.03 if method == "sparse" else "null"}, scheduler: constant}}
output: {{directory: out-{name}}}
"""
    path = work / f"{name}.yaml"
    path.write_text(text)
    return path


def mace_command(work: Path, e0s: dict, epochs: int = 1) -> list[str]:
    e0_text = "{" + ", ".join(f"{z}: {v!r}" for z, v in sorted(e0s.items())) + "}"
    return [
        str(Path(sys.executable).parent / "mace_run_train"),
        "--name",
        "mace",
        "--seed",
        "0",
        "--work_dir",
        str(work / "mace"),
        "--train_file",
        "train20.xyz",
        "--valid_file",
        "valid.xyz",
        "--energy_key",
        "REF_energy",
        "--forces_key",
        "REF_forces",
        "--stress_key",
        "REF_stress",
        "--E0s",
        e0_text,
        "--foundation_model",
        "foundation.model",
        "--multiheads_finetuning",
        "False",
        "--foundation_model_elements",
        "True",
        "--loss",
        "stress",
        "--energy_weight",
        "1.0",
        "--forces_weight",
        "10.0",
        "--stress_weight",
        "1.0",
        "--batch_size",
        "4",
        "--valid_batch_size",
        "4",
        "--lr",
        "1e-3",
        "--max_num_epochs",
        str(epochs),
        "--default_dtype",
        "float64",
        "--device",
        "cpu",
        "--num_workers",
        "0",
        "--pin_memory",
        "False",
        "--save_cpu",
        "--plot",
        "False",
    ]


E0_ONLY = """import sys
from sparseft.data import Frames, Keys, attach_labels, read_frames
from sparseft.e0s import resolve_e0s
from sparseft.loading import load_model
model = load_model("foundation.model")
frames = attach_labels(read_frames("e0.xyz"), Keys())
resolve_e0s("estimated", model, frames, Keys())
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=None, help="an older sparseft checkout for the E0-estimation row")
    parser.add_argument("--out", default=str(HERE / "results" / "memory.md"))
    parser.add_argument("--skip-mace", action="store_true")
    args = parser.parse_args(argv)
    from machine import cpu_model, installed_versions, usable_cores

    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="sparseft-memory-") as tmp:
        work = Path(tmp)
        facts = make_set(work)
        sparseft = [sys.executable, "-m", "sparseft", "finetune", "--quiet"]
        runs = [
            (
                f"sparseft full, E0s estimated ({facts['atoms']}-atom set)",
                sparseft + [str(sparseft_recipe(work, "fe", "full", "estimated"))],
                env,
            ),
            ("sparseft full, E0s foundation", sparseft + [str(sparseft_recipe(work, "ff", "full", "foundation"))], env),
            (
                "sparseft sparse, E0s estimated",
                sparseft + [str(sparseft_recipe(work, "se", "sparse", "estimated"))],
                env,
            ),
        ]
        if not args.skip_mace:
            runs.append(("mace_run_train full (same file, data, E0s)", mace_command(work, facts["e0s"]), env))
        runs.append(("E0 estimation only, 30 frames (this tree)", [sys.executable, "-c", E0_ONLY], env))
        if args.before:
            runs.append(
                (
                    f"E0 estimation only, 30 frames ({args.before})",
                    [sys.executable, "-c", E0_ONLY],
                    {**env, "PYTHONPATH": str(Path(args.before).resolve())},
                )
            )
        for template in ("quickstart", "sparse", "lora", "heads"):
            path = ROOT / "sparseft" / "templates" / f"{template}.yaml"
            runs.append(
                (
                    f"shipped recipe {template}.yaml (6 steps)",
                    sparseft
                    + [
                        str(path),
                        "--set",
                        f"output.directory={work / ('out-' + template)}",
                        "--set",
                        "train.max_steps=6",
                        "--set",
                        "train.epochs=1",
                    ],
                    env,
                )
            )
        for label, command, run_env in runs:
            load = os.getloadavg()[0]
            peak, wall, code = run_process(command, run_env, work)
            rows.append(
                {
                    "run": label,
                    "peak_rss_mb": round(peak),
                    "wall_s": round(wall, 1),
                    "exit": code,
                    "load": round(load, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    write_report(Path(args.out), rows, cpu_model(), usable_cores(), installed_versions(["torch", "mace-torch"]))
    return 0


def write_report(path: Path, rows: list[dict], cpu: str, cores: int, versions: dict) -> None:
    mace = next((r["peak_rss_mb"] for r in rows if r["run"].startswith("mace_run_train")), None)
    lines = [
        "# Peak memory of fine-tuning runs (benchmarks/memory.py)",
        "",
        f"Machine: {cpu}, {cores} usable cores, one torch thread per process; "
        f"{', '.join(f'{k} {v}' for k, v in versions.items())}. The machine was busy with other "
        "helpers' work during the runs (load average in the table); memory, unlike time, does not depend on it.",
        "",
        "| run | peak RSS (MB) | vs mace_run_train | wall (s) | load avg | exit |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            f"{r['peak_rss_mb'] / mace:.2f}x"
            if mace and "atom set" in r["run"] or (mace and r["run"].startswith("sparseft"))
            else ""
        )
        lines.append(f"| {r['run']} | {r['peak_rss_mb']} | {ratio} | {r['wall_s']} | {r['load']} | {r['exit']} |")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
