"""Settings of the comparison: paths, budgets per data set, the methods compared, goal thresholds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUN_PY = REPO / "benchmarks" / "run.py"  # the entry point; `run.py _worker SPEC` runs one sparseft fine-tune
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_REAL = REPO.parent / "shared" / "real"
SCRATCH_LR = 1e-2  # training from scratch: mace_run_train's default lr
SPARSE_L1 = 0.1

GOAL_SPARSE_VS_FULL = 1.05  # sparse (<= 3 % changed) test force MAE / full fine-tuning's
GOAL_EPOCH_RATIO = 1.0  # sparseft full FT epoch / mace_run_train full FT epoch
GOAL_ADAPTER_OVERHEAD = 1.30  # adapter epoch / sparseft full FT epoch


# =============================================================================== budgets
# Per data set: training-set size of the main comparison (None: all available), epochs,
# batch size, learning rate, loss weights, split sizes, learning-curve sizes and seeds.
# magnetic: the settings of recipes/hco-magmom-head.yaml (the moment head, its loss weight, the
# optimiser) with fewer epochs; n_train / n_replay: moment / xTB replay frames (None: the whole file).
MAGNETIC_TRAIN = dict(
    epochs=15,
    batch_size=8,
    lr=5e-3,
    scheduler="cosine",
    ema_decay=0.95,
    energy_weight=1.0,
    forces_weight=10.0,
    magmoms_weight=100.0,
    hidden=64,
    l1=0.3,
)
FULL = {
    "ecemc": dict(
        n_train=20,
        n_valid=10,
        n_test=40,
        n_forget=100,
        epochs=8,
        batch_size=2,
        lr=2e-3,
        energy_weight=100.0,
        forces_weight=10.0,
        lc_sizes=[],
        lc_seeds={},
        lc_min_steps=0,
    ),
    "domain": dict(
        n_train=100,
        n_valid=None,
        n_test=None,
        n_forget=100,
        epochs=5,
        batch_size=4,
        lr=2e-3,
        energy_weight=100.0,
        forces_weight=10.0,
        lc_sizes=[10, 30, "all"],
        lc_seeds={10: [0, 1, 2]},
        lc_min_steps=60,
    ),
    "magnetic": dict(n_train=None, n_replay=None, n_forget=200, **MAGNETIC_TRAIN),
}
QUICK = {
    "ecemc": dict(
        n_train=6,
        n_valid=4,
        n_test=6,
        n_forget=10,
        epochs=2,
        batch_size=2,
        lr=2e-3,
        energy_weight=100.0,
        forces_weight=10.0,
        lc_sizes=[],
        lc_seeds={},
        lc_min_steps=0,
    ),
    "domain": dict(
        n_train=12,
        n_valid=6,
        n_test=8,
        n_forget=10,
        epochs=2,
        batch_size=4,
        lr=2e-3,
        energy_weight=100.0,
        forces_weight=10.0,
        lc_sizes=[6],
        lc_seeds={6: [0, 1]},
        lc_min_steps=4,
    ),
    "magnetic": dict(n_train=24, n_replay=16, n_forget=10, **{**MAGNETIC_TRAIN, "epochs": 2}),
}
QUICK_METHODS = ["sparse-3", "lora-4", "full", "mace-full", "mace-lora-4"]
QUICK_HEAD_METHODS = ["head", "sparse-3"]


# =============================================================================== methods
@dataclasses.dataclass(frozen=True)
class Method:
    key: str
    label: str
    tool: str  # "sparseft" | "mace"
    family: str  # sparse | lora | freeze | full | scratch | mace-full | mace-freeze | mace-lora
    adapters: tuple = ()  # sparseft adapter dicts (JSON strings, to stay hashable)
    train: tuple = ()  # sparseft train-section overrides, (key, value) pairs
    mace_args: tuple = ()  # extra mace_run_train flags
    data: tuple = ()  # sparseft data-section overrides, (key, JSON value) pairs (e.g. replay)
    scratch: bool = False
    optional: bool = False  # not in the default list (name it in --methods)

    def adapter_dicts(self, n_layers: int) -> list[dict]:
        out = []
        for text in self.adapters:
            item = json.loads(text)
            sel = item.get("select") or {}
            if sel.get("layers") == ["last"]:
                item["select"] = {**sel, "layers": [n_layers - 1]}
            out.append(item)
        return out


def _sparse(density: float) -> Method:
    pct = f"{100 * density:g}"
    return Method(
        f"sparse-{pct}",
        f"sparse {pct}%",
        "sparseft",
        "sparse",
        adapters=(json.dumps({"method": "sparse", "l1": SPARSE_L1}),),
        train=(("target_density", density), ("l1_schedule", "warmup"), ("retrain_fraction", 0.3)),
    )


METHODS = [
    *[_sparse(d) for d in (0.005, 0.01, 0.03, 0.10)],
    *[
        Method(f"lora-{r}", f"LoRA r={r}", "sparseft", "lora", adapters=(json.dumps({"method": "lora", "rank": r}),))
        for r in (2, 4, 8)
    ],
    Method(
        "freeze-readout",
        "freeze: readouts only",
        "sparseft",
        "freeze",
        adapters=(json.dumps({"method": "freeze", "select": {"kinds": ["readout"]}}),),
    ),
    Method(
        "freeze-last",
        "freeze: last interaction + product + readout",
        "sparseft",
        "freeze",
        adapters=(json.dumps({"method": "freeze", "select": {"layers": ["last"]}}),),
    ),
    Method("full", "full fine-tuning", "sparseft", "full", adapters=(json.dumps({"method": "full"}),)),
    Method(
        "scratch",
        "from scratch (same architecture)",
        "sparseft",
        "scratch",
        adapters=(json.dumps({"method": "full"}),),
        scratch=True,
    ),
    Method("mace-full", "mace_run_train naive FT", "mace", "mace-full"),
    Method("mace-freeze6", "mace_run_train --freeze 6 (readouts)", "mace", "mace-freeze", mace_args=("--freeze", "6")),
    Method(
        "mace-freeze5",
        "mace_run_train --freeze 5 (products + readouts)",
        "mace",
        "mace-freeze",
        mace_args=("--freeze", "5"),
        optional=True,
    ),
    *[
        Method(
            f"mace-lora-{r}",
            f"mace_run_train --lora r={r}",
            "mace",
            "mace-lora",
            mace_args=("--lora", "True", "--lora_rank", str(r)),
        )
        for r in (2, 4, 8)
    ],
    # Diagnostic (not in the default list, not used for goals or learning curves): the same
    # 3 % sparse adapter with its support fixed after 30 % of the steps instead of 70 %, i.e.
    # a short L1 search and a long retraining phase within the same epoch budget.
    Method(
        "sparse-3-early",
        "sparse 3%, support fixed at 30% of steps (diagnostic)",
        "sparseft",
        "sparse-diag",
        adapters=(json.dumps({"method": "sparse", "l1": SPARSE_L1}),),
        train=(("target_density", 0.03), ("l1_schedule", "warmup"), ("retrain_fraction", 0.7)),
        optional=True,
    ),
]
METHOD_BY_KEY = {m.key: m for m in METHODS}
LC_FAMILIES = ("sparse", "lora", "full")


def selected_methods(args) -> list[Method]:
    if args.report_only and not args.methods:
        return list(METHODS)  # whatever is cached, optional methods included
    keys = (
        args.methods.split(",")
        if args.methods
        else (QUICK_METHODS if args.quick else [m.key for m in METHODS if not m.optional])
    )
    unknown = [k for k in keys if k not in METHOD_BY_KEY and k not in HEAD_METHOD_BY_KEY]
    if unknown:
        raise SystemExit(
            f"--methods: unknown {unknown}; valid: {', '.join(METHOD_BY_KEY)}; magnetic data set: "
            f"{', '.join(HEAD_METHOD_BY_KEY)}"
        )
    return [METHOD_BY_KEY[k] for k in keys if k in METHOD_BY_KEY]


# =============================================================================== magnetic (heads)
HEAD_NAME = "spin"  # the collinear moment head of every magnetic run (metrics: spin.magmoms_mae, ...)


@dataclasses.dataclass(frozen=True)
class HeadMethod:
    """A trunk setting under the magnetic-moment head (sparseft only: mace_run_train 0.3.16 has no
    moment head). The head itself is the same in every run."""

    key: str
    label: str
    family: str  # head | sparse | lora | full
    adapters: tuple = ()  # trunk adapter dicts (JSON strings); () = frozen trunk
    train: tuple = ()  # train-section overrides, (key, value) pairs
    replay: bool = True  # xTB replay frames in data.train next to the moment frames

    def adapter_dicts(self, l1: float) -> list[dict]:
        out = [json.loads(text) for text in self.adapters]
        return [{**item, "l1": l1} if item["method"] == "sparse" else item for item in out]


def _head_sparse(density: float, replay: bool = True) -> HeadMethod:
    pct = f"{100 * density:g}"
    return HeadMethod(
        f"sparse-{pct}" + ("" if replay else "-noreplay"),
        f"sparse {pct}% + head" + ("" if replay else ", no xTB replay"),
        "sparse",
        adapters=(json.dumps({"method": "sparse"}),),
        train=(("target_density", density), ("l1_schedule", "warmup"), ("retrain_fraction", 0.3)),
        replay=replay,
    )


HEAD_METHODS = [
    HeadMethod("head", "head only (frozen trunk)", "head"),
    _head_sparse(0.01),
    _head_sparse(0.03),
    HeadMethod("lora-4", "LoRA r=4 + head", "lora", adapters=(json.dumps({"method": "lora", "rank": 4}),)),
    HeadMethod("full", "full fine-tuning + head", "full", adapters=(json.dumps({"method": "full"}),)),
    _head_sparse(0.03, replay=False),
]
HEAD_METHOD_BY_KEY = {m.key: m for m in HEAD_METHODS}


def selected_head_methods(args) -> list[HeadMethod]:
    """--methods picks by key in both lists (sparse-3, lora-4, full are in both); default all."""
    if args.methods:
        return [HEAD_METHOD_BY_KEY[k] for k in args.methods.split(",") if k in HEAD_METHOD_BY_KEY]
    if args.quick and not args.report_only:
        return [HEAD_METHOD_BY_KEY[k] for k in QUICK_HEAD_METHODS]
    return list(HEAD_METHODS)
