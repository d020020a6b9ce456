"""Forgetting without pretraining data: pseudo-label replay on the foundation head against replay
on a separate head (issue 20), SevenNet-0 fine-tuned on hcp Fe (Fe-GAP22 DB10, PBE).

The probe of what the foundation knew: other chemistries with their own DFT labels (BOTNet
acetylacetone, rMD17 aspirin, aiida-mlip ZrCHO, DeePMD water test frames of
``benchmarks/frontier/data``), scored by force MAE (free of any energy zero). Forgetting =
probe force MAE of the fine-tuned model minus SevenNet-0's own, per set; the summary number is
the mean over the probe sets of that increase (a set that got better counts as zero). The replay structures are
*unlabelled* molecules of two of those chemistries (acac and aspirin training frames, never
probe frames), pseudo-labelled by SevenNet-0 at fine-tune time: no pretraining data is used.

Variants (64 optimiser steps, batch 8, each method's lr from the frontier's fe_hcp tuning):
``full``, ``full + replay`` (replay labels on the foundation head, as before), ``full + replay
head`` (``data.replay.head``: the replay labels train a copy of the readout on the shared trunk;
the exported model keeps the target head; its loss weights are a head's defaults, energy 1 and
forces 10, times the variant's replay weight), and the same for LoRA r4.

Usage: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/forgetting_heads.py [--work DIR] [--jobs 2]``;
writes ``benchmarks/results/forgetting_heads.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import ase.io
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import ONE_THREAD, run_pool, run_timed  # noqa: E402  (benchmarks/processes.py)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / "frontier" / "data"
OUTPUT = REPO / "benchmarks" / "results" / "forgetting_heads.md"
PROBE = {"acac": 20, "aspirin": 20, "zrcho": None, "water": 3}  # set -> frames of its test file (None: all)
REPLAY_FROM = {"acac": 16, "aspirin": 16}  # set -> frames of its training file, labels removed
STEPS, BATCH = 64, 8
REPLAY_HEAD = {"name": "base", "kind": "energy", "energy_key": "REPLAY_energy", "forces_key": "REPLAY_forces"}
# name -> (adapter, lr, replay: None | "foundation" | "head", replay loss weight[, optimiser steps])
VARIANTS = {
    "full": ({"method": "full"}, 3e-3, None, 1.0),
    "full + replay": ({"method": "full"}, 3e-3, "foundation", 1.0),
    "full + replay head": ({"method": "full"}, 3e-3, "head", 1.0),
    "full + replay head x0.1": ({"method": "full"}, 3e-3, "head", 0.1),
    "lora r4": ({"method": "lora", "rank": 4}, 3e-2, None, 1.0),
    "lora r4 + replay head": ({"method": "lora", "rank": 4}, 3e-2, "head", 1.0),
    "lora r4 + replay head x0.1": ({"method": "lora", "rank": 4}, 3e-2, "head", 0.1),
    # does replay cost target error by taking batch slots? 126 target + 32 replay frames: at 64
    # steps the target gets 64 x 126/158 = 51 steps' worth of frames; equal target steps = 80
    "full, 51 steps": ({"method": "full"}, 3e-3, None, 1.0, 51),
    "full + replay head, 80 steps": ({"method": "full"}, 3e-3, "head", 1.0, 80),
}


def files(work: Path) -> tuple[dict, Path]:
    """The probe files (``{set: path}``) and the unlabelled replay file, written once."""
    work.mkdir(parents=True, exist_ok=True)
    probes = {}
    for name, n in PROBE.items():
        path = work / f"probe_{name}.xyz"
        if not path.is_file():
            frames = ase.io.read(DATA / name / "test.xyz", ":")
            ase.io.write(path, frames[:n] if n else frames)
        probes[name] = path
    replay = work / "replay_structures.xyz"
    if not replay.is_file():
        pool = []
        for name, n in REPLAY_FROM.items():
            for atoms in ase.io.read(DATA / name / "train.xyz", f":{n}"):
                atoms.info = {k: v for k, v in atoms.info.items() if k == "config_type"}
                atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
                pool.append(atoms)
        ase.io.write(replay, pool)
    return probes, replay


def recipe(work: Path, name: str, probes: dict, replay_file: Path, seed: int) -> Path:
    adapter, lr, replay, weight, *rest = VARIANTS[name]
    steps = rest[0] if rest else STEPS
    folder = work / f"{name.replace(' + ', '_').replace(', ', '_').replace(' ', '-')}_seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "train": str(DATA / "fe_hcp" / "train.xyz"),
        "valid": str(DATA / "fe_hcp" / "valid.xyz"),
        "test": str(DATA / "fe_hcp" / "test.xyz"),
        "E0s": "estimated",
        "evaluate": {f"probe_{k}": str(v) for k, v in probes.items()},
    }
    out = {"base": {"model": "sevennet:7net-0", "dtype": "float32", "device": "cpu"}, "data": data}
    if replay:
        data["replay"] = {"source": str(replay_file), "labels": "base", "weight": weight, "seed": seed}
        if replay == "head":  # the head's own loss weights (a per-frame weight cancels in its own term)
            data["replay"]["head"] = REPLAY_HEAD["name"]
            scaled = {"energy_weight": 1.0 * weight, "forces_weight": 10.0 * weight} if weight != 1.0 else {}
            out["heads"] = [{**REPLAY_HEAD, **scaled}]
    out["adapters"] = [adapter]
    out["train"] = {"lr": lr, "epochs": 100000, "max_steps": steps, "batch_size": BATCH, "patience": 2, "seed": seed}
    out["output"] = {"directory": str(folder / "out")}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(out, sort_keys=False))
    return path


def run_all(recipes: list[Path], jobs: int) -> None:
    """Run ``sparseft finetune`` on each recipe without metrics yet, ``jobs`` at a time."""
    todo = [r for r in recipes if not (r.parent / "out" / "metrics.json").is_file()]

    def one(r: Path) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] start {r.parent.name}", flush=True)
        cmd = [str(REPO / ".venv" / "bin" / "sparseft"), "finetune", str(r), "--quiet", "--overwrite"]
        done = run_timed(cmd, r.parent / "stdout.log", env=ONE_THREAD)
        print(f"[{time.strftime('%H:%M:%S')}] done {r.parent.name}: exit {done.returncode}", flush=True)

    run_pool(one, todo, jobs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/forgetting-heads"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    probes, replay_file = files(args.work)
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = {(n, s): recipe(args.work, n, probes, replay_file, s) for s in seeds for n in VARIANTS}
    load_before = os.getloadavg()
    run_all(list(recipes.values()), args.jobs)
    rows = {}
    for (name, seed), path in recipes.items():
        metrics_file = path.parent / "out" / "metrics.json"
        if not metrics_file.is_file():
            rows[(name, seed)] = None
            continue
        m = json.loads(metrics_file.read_text())
        zs = m["base_zero_shot"]
        probe = {k: 1000 * m["splits"][f"probe_{k}"]["forces_mae"] for k in PROBE}
        probe_zs = {k: 1000 * zs[f"probe_{k}"]["forces_mae"] for k in PROBE}
        rows[(name, seed)] = {
            "test_F": 1000 * m["splits"]["test"]["forces_mae"],
            "zs_F": 1000 * zs["test"]["forces_mae"],
            "probe": probe,
            "forgetting": sum(max(probe[k] - probe_zs[k], 0.0) for k in PROBE) / len(PROBE),
            "probe_zs": probe_zs,
        }
    write_report(args, rows, seeds, load_before)
    return 0


def write_report(args, rows: dict, seeds: list[int], load_before) -> None:
    load = os.getloadavg()
    any_row = next((r for r in rows.values() if r), None)
    lines = [
        "# Forgetting without pretraining data: replay on the foundation head or on its own head",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/forgetting_heads.py` "
        f"(work folder `{args.work}`); this 2-core CPU, one torch thread per run, {args.jobs} runs at a time; "
        f"load average {load_before[0]:.1f} before, {load[0]:.1f} after. SevenNet-0, float32, hcp Fe "
        f"(`benchmarks/frontier/data/fe_hcp`, E0s estimated), {STEPS} optimiser steps of batch {BATCH} (unless the "
        "variant says otherwise), "
        f"patience 2, seeds {seeds}.",
        "",
        "Probe (force MAE against each set's own DFT labels; SevenNet-0 zero-shot in brackets): "
        + (", ".join(f"{k} ({v:.1f})" for k, v in any_row["probe_zs"].items()) if any_row else "-")
        + " meV/Å. Forgetting = mean over the probe sets of the increase of force MAE over zero-shot (a set "
        "that got better counts 0; the per-set columns are signed). Replay: "
        f"{sum(REPLAY_FROM.values())} unlabelled acac/aspirin training structures pseudo-labelled by "
        "SevenNet-0 (never probe frames); loss weight 1 (the replay head: a head's default energy/force "
        "weights 1/10; x0.1: 0.1/1).",
        "",
        "| variant | seed | target test F (meV/Å) | forgetting (meV/Å) | "
        + " | ".join(f"probe {k}" for k in PROBE)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(PROBE),
    ]
    for (name, seed), r in rows.items():
        if r is None:
            lines.append(f"| {name} | {seed} | failed | | " + "| " * len(PROBE))
            continue
        probe = " | ".join(f"{r['probe'][k]:.1f} ({r['probe'][k] - r['probe_zs'][k]:+.1f})" for k in PROBE)
        lines.append(f"| {name} | {seed} | {r['test_F']:.1f} | {r['forgetting']:+.1f} | {probe} |")
    if any_row:
        lines += ["", f"SevenNet-0 zero-shot target test F: {any_row['zs_F']:.1f} meV/Å (same refitted E0s)."]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
