#!/usr/bin/env bash
# The FULL frontier protocol of issue 20 on SevenNet-0, for a machine with a GPU
# (the CPU run of this session is the reduced grid in benchmarks/frontier/cpu_grid.sh).
#
#   methods: sparse 0.5/1/3/10/20 % (two_phase, the default mode; 3 % also fisher, gradual), LoRA r1/r2/r4/r8,
#            freeze readout, freeze last interaction layer, full fine-tuning
#   lr grid: 3 values per family (full/freeze 3e-4..3e-3, sparse/LoRA 3e-3..3e-2), extended
#            along the half-decade ladder while the best (validation force MAE) is at an edge
#   budget:  MAX_STEPS optimiser steps (default 2000), early stopping on validation with
#            patience PATIENCE validated epochs (default 5); each method's own defaults + tuned lr
#   seeds:   0 (tuning), then 1 and 2 at the selected lr for every method
#   curves:  n = 10, 50 training frames (and all) at the lr selected with all frames, 3 seeds
#   sets:    fe_hcp, fe_slab (Fe-GAP22), zrcho (aiida-mlip), water (DeePMD), acac (BOTNet),
#            aspirin (rMD17); E0s estimated for every run; splits valid 0.2 / test 0.2, seed 0
#
# The device machine has no ../shared: write the split files here first and carry them:
#   .venv/bin/python benchmarks/frontier/run.py --full --prepare-only
#   (device tool: carry benchmarks/frontier/data and .venv, command: benchmarks/gpu_frontier.sh)
# Size: 6 sets x 12 methods x >= 3 lr + 2 x 12 seed reruns + 2 x 3 x 12 curve runs: ~ 200 runs
# per set group; at ~2-4 min per 2000-step run on one H100 (4 runs sharing the GPU) plan for
# several GPU hours; STAGES/SETS/METHODS narrow it (e.g. SETS=fe_hcp STAGES=tune).
#
# PRESET=lease fits the device tool's lease (one call, ~8 min; this project lends 15 min of device
# time a session): sets fe_hcp, fe_slab, acac, ecemc_xtb; full, sparse 3 % (two_phase, gradual),
# LoRA r1/r2 at 512 steps, each at the lr the CPU grid selected on fe_hcp (64 steps), seed 0, early
# stopping on validation F; results come back through $OUT (results.json files and the report):
#   here:  bash scripts/gpu_wheels.sh --sevenn
#          .venv/bin/python benchmarks/frontier/run.py --prepare-only --sets fe_hcp,fe_slab,acac,ecemc_xtb
#          mkdir -p .frontier-data && cp -r benchmarks/frontier/data/. .frontier-data/   (git-excluded)
#   device run, carry [".whl", ".frontier-data"], timeout_s 600:
#          PRESET=lease DATA_DIR=.frontier-data bash benchmarks/gpu_frontier.sh
#
# Usage: benchmarks/gpu_frontier.sh [extra run.py flags, e.g. --deadline 18:00]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
PY=${PY:-python3}          # a python with a CUDA torch (the device image's python3)
if [[ -d .whl ]]; then  # carried wheels (scripts/gpu_wheels.sh --sevenn): the mace/sevenn stack
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
DEVICE=${DEVICE:-cuda}     # DEVICE=cpu: a dry run of this script on a machine without a GPU
PRESET=${PRESET:-full}
LR=()
if [[ $PRESET == lease ]]; then
    MAX_STEPS=${MAX_STEPS:-512}; STAGES=${STAGES:-tune}; JOBS=${JOBS:-5}; THREADS=${THREADS:-3}
    SETS=${SETS:-fe_hcp,fe_slab,acac,ecemc_xtb}; METHODS=${METHODS:-full,sparse-3,sparse-3-gradual,lora-r1,lora-r2}
    LR=(--lr-from fe_hcp --lr-from-steps 64 --lr-from-device cpu)
fi
MAX_STEPS=${MAX_STEPS:-2000}
PATIENCE=${PATIENCE:-5}
JOBS=${JOBS:-4}            # runs sharing the GPU at a time (SevenNet-0 on small frames leaves it idle)
THREADS=${THREADS:-4}      # CPU threads per run (16 cores / JOBS)
STAGES=${STAGES:-tune,seeds,curves}
SETS=${SETS:-fe_hcp,fe_slab,zrcho,water,acac,ecemc_xtb,aspirin}
METHODS=${METHODS:-sparse-0.5,sparse-1,sparse-3,sparse-10,sparse-20,sparse-3-fisher,sparse-3-gradual,sparse-3-padam,sparse-3-perblock,sparse-str,rosa-r1-1,lora-r1,lora-r2,lora-r4,lora-r8,freeze-readout,freeze-last,full}
DATA_DIR=${DATA_DIR:-benchmarks/frontier/data}
RUNS_DIR=${RUNS_DIR:-benchmarks/frontier/runs}
# under the device tool the report stays there; $OUT gets one archive of the new runs and the report
REPORT=${OUT:+/tmp/frontier-report/frontier.md}
REPORT=${REPORT:-benchmarks/results/frontier.md}
mkdir -p "$(dirname "$REPORT")"

if [[ $DEVICE == cuda ]]; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
fi

set +e
"$PY" benchmarks/frontier/run.py --full --device "$DEVICE" --threads "$THREADS" --jobs "$JOBS" \
    --max-steps "$MAX_STEPS" --patience "$PATIENCE" --sets "$SETS" --methods "$METHODS" \
    --seeds 0,1,2 --sizes 10,50 --extend --extend-rounds 3 --stage "$STAGES" "${LR[@]}" \
    --data-dir "$DATA_DIR" --runs-dir "$RUNS_DIR" --sparseft "$PY -m sparseft" "$@"
status=$?
set -e
"$PY" benchmarks/frontier/report.py --runs-dir "$RUNS_DIR" --output "$REPORT"
if [[ -n ${OUT:-} ]]; then  # the device tool returns at most 8 files: one archive
    tar -czf "$OUT/frontier-runs.tgz" "$REPORT" "$RUNS_DIR"/*_"$DEVICE"/results.json || true
fi
echo "report: $REPORT (GPU sections are headed '<set> (<steps> steps, cuda)'); run.py exit $status"
exit $status
