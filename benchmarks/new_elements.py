"""New elements on a real model: the xTB EC/EMC MACE (H, C, O) fine-tuned on BOTNet 3BPA
(C, H, N, O; DFT wB97X/6-31G(d)), adding N, against the same architecture trained from scratch.

Every run is one ``sparseft finetune`` recipe (built here as a dict) with a stated epoch cap;
results are cached in ``--work`` (one JSON per run), so an interrupted benchmark resumes and
``--only`` / ``--report`` rerun parts. Runs are ordered by priority (100-structure comparison
first, then initialisations, then learning curves) so that cutting the grid keeps the core.

    OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 nice python benchmarks/new_elements.py [--epochs 40]

Forgetting: 3BPA has N in every frame, so the N-free structures are 50 frames of the base's
own data (``solvent_xtb_test.xyz``, GFN2-xTB, H/C/O); their force MAE is reported next to the
base's. Energies there are not comparable after E0s were refitted to DFT, so only forces.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

REAL = Path(os.environ.get("SPARSEFT_REAL", HERE.parent.parent / "shared" / "real"))  # ../shared/real
MODEL = REAL / "models" / "mace_tutorial_ECEMC_xtb_mace01_swa.model"
BPA = REAL / "data" / "BOTNet_3BPA"
SOLVENT = REAL / "data" / "mace_tutorial_solvent" / "solvent_xtb_test.xyz"
RESULTS = HERE / "results" / "new_elements.md"

SPARSE = {"method": "sparse", "l1": 1e-5}
LORA = {"method": "lora", "rank": 4}
FULL = {"method": "full"}


def runs(epochs: int) -> list[dict]:
    """The grid, most important first: (name, n_train, mode, init, adapters, lr)."""
    grid = [
        ("scratch", 100, "scratch", None, [FULL], 1e-2),
        ("add N, new element only", 100, "add", "nearest", [], 1e-2),
        ("add N + full", 100, "add", "nearest", [FULL], 2e-3),
        ("add N + sparse 10%", 100, "add", "nearest", [SPARSE], 2e-3),
        ("add N + LoRA r=4", 100, "add", "nearest", [LORA], 2e-3),
        ("add N + full, init mean", 100, "add", "mean", [FULL], 2e-3),
        ("add N + full, init random", 100, "add", "random", [FULL], 2e-3),
        ("add N + full, init O", 100, "add", {"N": "O"}, [FULL], 2e-3),
        ("add N, new element only, init random", 100, "add", "random", [], 1e-2),
    ]
    for n in (10, 30, 300):
        grid += [("scratch", n, "scratch", None, [FULL], 1e-2), ("add N + full", n, "add", "nearest", [FULL], 2e-3)]
    return [
        {"name": g[0], "n": g[1], "mode": g[2], "init": g[3], "adapters": g[4], "lr": g[5], "epochs": epochs}
        for g in grid
    ]


def key(run: dict) -> str:
    init = run["init"] if not isinstance(run["init"], dict) else "-".join(f"{k}{v}" for k, v in run["init"].items())
    method = "+".join(a["method"] for a in run["adapters"]) or "element"
    return f"{run['mode']}_{method}_{init}_n{run['n']}_e{run['epochs']}".replace(" ", "")


def prepare(work: Path) -> dict:
    """Write the data subsets once: test (100), train pool, N-free xTB frames (50), E0s."""
    import ase.io
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    frames = ase.io.read(BPA / "train_300K.xyz", ":")
    order = np.random.default_rng(0).permutation(len(frames))
    test, pool = [frames[i] for i in order[:100]], [frames[i] for i in order[100:]]
    paths = {"test": work / "test.xyz", "nfree": work / "solvent_xtb_50.xyz"}
    if not paths["test"].exists():
        ase.io.write(paths["test"], test)
        ase.io.write(paths["nfree"], ase.io.read(SOLVENT, ":50"))
    for n in (10, 30, 100, 300):
        paths[n] = work / f"train_{n}.xyz"
        if not paths[n].exists():
            ase.io.write(paths[n], pool[:n])
    e0s = {
        a.get_chemical_symbols()[0]: float(a.get_potential_energy()) for a in ase.io.read(BPA / "iso_atoms.xyz", ":")
    }
    return {"paths": paths, "e0s": e0s}


def scratch_model(work: Path) -> Path:
    """The extended architecture (H, C, N, O) with every weight freshly initialised by mace."""
    from sparseft._compat import torch
    from sparseft.elements import _extended_e0s, _rebuild
    from sparseft.loading import load_model

    path = work / "scratch_init.model"
    if not path.exists():
        base = load_model(MODEL, dtype="float64")
        zs = sorted([int(z) for z in base.atomic_numbers] + [7])
        torch.save(_rebuild(base, zs, _extended_e0s(base, zs, {7: []}), seed=0), path)
    return path


def recipe_for(run: dict, data: dict, work: Path) -> dict:
    paths = data["paths"]
    base = {
        "model": str(scratch_model(work) if run["mode"] == "scratch" else MODEL),
        "dtype": "float64",
        "device": "cpu",
    }
    if run["mode"] == "add":
        base.update(add_elements=["N"], element_init=run["init"])
    return {
        "base": base,
        "data": {
            "train": str(paths[run["n"]]),
            "test": str(paths["test"]),
            "valid_fraction": 0.0,
            "energy_key": "energy_xtb",
            "forces_key": "forces_xtb",
            "stress_key": None,
            "virials_key": None,
            "E0s": data["e0s"] if run["mode"] == "scratch" else ("foundation" if not run["adapters"] else "estimated"),
            "evaluate": {"nfree": str(paths["nfree"])},
        },
        "adapters": run["adapters"],
        "train": {
            "lr": run["lr"],
            "epochs": run["epochs"],
            "batch_size": 4,
            "scheduler": "cosine",
            "target_density": 0.1 if run["adapters"] == [SPARSE] else None,
            "seed": 0,
        },
        "output": {"directory": str(work / "runs" / key(run))},
    }


def execute(run: dict, data: dict, work: Path) -> dict:
    from sparseft.recipe import recipe_from_dict
    from sparseft.run import run as finetune

    cache = work / "results" / f"{key(run)}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    recipe = recipe_from_dict(recipe_for(run, data, work))
    started, cpu = time.perf_counter(), time.process_time()
    metrics = finetune(recipe, overwrite=True, quiet=True)
    out = {
        **run,
        "wall_s": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "test": metrics["splits"]["test"],
        "nfree": metrics["splits"]["nfree"],
        "zero_shot_test": metrics["base_zero_shot"]["test"],
        "zero_shot_nfree": metrics["base_zero_shot"]["nfree"],
        "trainable": metrics["trainable_parameters"],
        "changed": metrics["changed_parameters"],
        "load_before": os.getloadavg(),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, indent=1))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--work", default="/tmp/sparseft_new_elements")
    parser.add_argument("--only", type=int, default=None, help="run only the first N runs of the grid")
    parser.add_argument("--sizes", type=int, nargs="*", default=None, help="run only the grid entries of these sizes")
    parser.add_argument("--report", action="store_true", help="only write the report from cached runs")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    work = Path(args.work)
    data = prepare(work)
    grid = [r for r in runs(args.epochs)[: args.only] if args.sizes is None or r["n"] in args.sizes]
    done = []
    for i, run in enumerate(grid):
        if args.report and not (work / "results" / f"{key(run)}.json").exists():
            continue
        print(f"[{i + 1}/{len(grid)}] {run['name']} n={run['n']}", flush=True)
        done.append(execute(run, data, work))
        from new_elements_report import write_report

        write_report(done, RESULTS, args.epochs)


if __name__ == "__main__":
    main()
