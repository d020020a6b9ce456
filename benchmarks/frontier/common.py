"""Shared definitions of the frontier benchmark (issue 20): sets, methods, grids, run ids.

Everything here is plain data plus small helpers; ``run.py`` drives ``sparseft finetune`` and
``report.py`` reads the cached ``runs/<id>/results.json`` files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
REAL = Path(os.environ.get("SPARSEFT_REAL_DIR", REPO.parent / "shared" / "real"))
RUNS = HERE / "runs"
DATA = HERE / "data"

# learning-rate ladder (half decades); a grid is a window of it, extended along it at an edge
LADDER = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]


@dataclass
class DataSet:
    name: str
    description: str
    source: str  # extxyz file (absolute, or relative to REAL)
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    max_atoms: int | None = None  # keep frames with at most this many atoms
    test_source: str | None = None  # a separate test file (else test_fraction of source)
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = 0
    batch_size: int = 8
    model: str | None = None  # base.model override (else the runner's --model)

    def path(self) -> Path:
        p = Path(self.source)
        return p if p.is_absolute() else REAL / p


SETS = {
    "fe_hcp": DataSet(
        "fe_hcp",
        "Fe-GAP22 DB10: 198 strained hcp Fe cells (2 atoms), spin-polarised PBE",
        "data/Fe_GAP22/DB10.xyz",
        energy_key="energy",
        forces_key="force",
    ),
    "fe_slab": DataSet(
        "fe_slab",
        "Fe-GAP22 DB11, frames of <= 16 atoms: 239 surface-separation/stretch slabs (2-6 atoms), spin-polarised PBE",
        "data/Fe_GAP22/DB11.xyz",
        energy_key="energy",
        forces_key="force",
        max_atoms=16,
    ),
    # GPU-only sets (frames too large for the 2-core CPU grid)
    "zrcho": DataSet(
        "zrcho",
        "aiida-mlip ZrCHO: 18 Zr-C-H-O frameworks (~114 atoms; IsolatedAtom frames dropped)",
        "data/aiida-mlip_ZrCHO/mlip_train.xyz",
        energy_key="dft_energy",
        forces_key="dft_forces",
        batch_size=2,
    ),
    "water": DataSet(
        "water",
        "DeePMD water: 400 periodic H128O64 boxes (192 atoms)",
        "data/DeePMD_water/water_all.extxyz",
        energy_key="energy",
        forces_key="forces",
        batch_size=2,
    ),
    "acac": DataSet(
        "acac",
        "BOTNet acetylacetone 300 K MD (15 atoms, DFT), 500 frames",
        "data/BOTNet_acac/train_300K.xyz",
        energy_key="energy",
        forces_key="forces",
        batch_size=8,
    ),
    "ecemc_xtb": DataSet(
        "ecemc_xtb",
        "MACE-tutorial EC/EMC solvent clusters, frames of <= 40 atoms (178 of 200, mean 25 atoms), GFN2-xTB",
        "data/mace_tutorial_solvent/solvent_xtb_train_200.xyz",
        energy_key="energy_xtb",
        forces_key="forces_xtb",
        max_atoms=40,
        batch_size=8,
    ),
    "aspirin": DataSet(
        "aspirin",
        "rMD17 aspirin (21 atoms, PBE/def2-SVP), training file",
        "data/rMD17_aspirin/rmd17_aspirin_train.xyz",
        energy_key="energy",
        forces_key="forces",
        batch_size=8,
    ),
}


@dataclass
class Method:
    name: str
    family: str  # "pe" (parameter-efficient: sparse/LoRA) or "dense" (full/freeze): picks the lr grid
    adapter: dict
    train: dict = field(default_factory=dict)


def _sparse(d):
    return Method(f"sparse-{d * 100:g}", "pe", {"method": "sparse"}, {"target_density": d})


def _lora(r):
    return Method(f"lora-r{r}", "pe", {"method": "lora", "rank": r})


ALL_METHODS = {
    m.name: m
    for m in [
        *[_sparse(d) for d in (0.005, 0.01, 0.03, 0.10, 0.20)],
        # the other support rules of sparseft (not its default): chosen up front (fisher) or
        # pruned gradually (gradual), at 3 %
        Method("sparse-3-fisher", "pe", {"method": "sparse", "mode": "fisher"}, {"target_density": 0.03}),
        Method("sparse-3-gradual", "pe", {"method": "sparse", "mode": "gradual"}, {"target_density": 0.03}),
        # the search-phase fix of two_phase: an Adam-preconditioned proximal step, at 3 %
        Method("sparse-3-padam", "pe", {"method": "sparse", "proximal": "adam"}, {"target_density": 0.03}),
        # per-block quotas instead of one global top-k (each weight block keeps 3 % of its entries)
        Method("sparse-3-perblock", "pe", {"method": "sparse", "allocation": "per_block"}, {"target_density": 0.03}),
        # Cho et al.'s STR, faithfully (learned per-tensor thresholds, no target density): sparseft's
        # defaults (threshold logit -12), and thresholds starting higher (-6, -4: g = 2.5e-3, 1.8e-2)
        Method("sparse-str", "pe", {"method": "sparse", "mode": "str"}),
        Method("sparse-str-i6", "pe", {"method": "sparse", "mode": "str", "threshold_init": -6.0}),
        Method("sparse-str-i4", "pe", {"method": "sparse", "mode": "str", "threshold_init": -4.0}),
        # thresholds that learn 5x faster, with the default and a 100x weight decay (pulling them up)
        Method("sparse-str-t50", "pe", {"method": "sparse", "mode": "str", "threshold_lr_scale": 50.0}),
        Method(
            "sparse-str-t50-wd",
            "pe",
            {"method": "sparse", "mode": "str", "threshold_lr_scale": 50.0, "threshold_weight_decay": 1e-2},
        ),
        # sparse + low-rank in one adapter (RoSA): LoRA r1 plus 1 % sparse, about sparse 3 %'s bytes
        Method("rosa-r1-1", "pe", {"method": "rosa", "rank": 1}, {"target_density": 0.01}),
        *[_lora(r) for r in (1, 2, 4, 8)],
        Method("freeze-readout", "dense", {"method": "freeze", "select": {"kinds": ["readout"]}}),
        # SevenNet-0's last interaction layer is index 4 (README: layers 0-4, readout separate)
        Method("freeze-last", "dense", {"method": "freeze", "select": {"layers": [4]}}),
        Method("full", "dense", {"method": "full"}),
    ]
}

CPU_METHODS = ["sparse-1", "sparse-3", "sparse-10", "lora-r1", "lora-r4", "freeze-readout", "full"]
FULL_METHODS = list(ALL_METHODS)

LR_GRID = {"dense": [3e-4, 1e-3, 3e-3], "pe": [3e-3, 1e-2, 3e-2]}


def run_id(set_name: str, method: str, steps: int, lr: float, seed: int, n: int | None, device: str = "cpu") -> str:
    dev = "" if device == "cpu" else f"_{device.replace(':', '')}"
    return f"{set_name}_{method}_st{steps}_lr{lr:g}_seed{seed}_n{'all' if n is None else n}{dev}"


def load_results(runs_dir: Path = RUNS) -> list[dict]:
    out = []
    for p in sorted(Path(runs_dir).glob("*/results.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue
    return out


def neighbours(lr: float, grid: list[float]) -> tuple[float | None, float | None]:
    """The ladder values just below and above ``grid`` (for extending at an edge)."""
    lo, hi = min(grid), max(grid)
    i_lo = min(range(len(LADDER)), key=lambda i: abs(LADDER[i] - lo))
    i_hi = min(range(len(LADDER)), key=lambda i: abs(LADDER[i] - hi))
    below = LADDER[i_lo - 1] if i_lo > 0 else None
    above = LADDER[i_hi + 1] if i_hi + 1 < len(LADDER) else None
    return below, above


def ok(results: list[dict]) -> list[dict]:
    return [r for r in results if r.get("status") == "ok"]


def select_lr(
    results: list[dict], set_name: str, method: str, n=None, steps=None, device=None
) -> tuple[float | None, dict]:
    """The lr of the seed-0 run with the lowest validation force MAE (the headline metric) for
    (set, method, n); returns (lr, {lr: valid F MAE})."""
    scores = {}
    for r in ok(results):
        if (
            (r["set"], r["method"], r["n"], r["seed"]) == (set_name, method, n, 0)
            and (steps is None or r["max_steps"] == steps)
            and (device is None or r.get("device") == device)
        ):
            scores[r["lr"]] = r["valid"]["forces_mae"]
    if not scores:
        return None, scores
    return min(scores, key=scores.get), dict(sorted(scores.items()))
