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
# Usage: benchmarks/gpu_frontier.sh [extra run.py flags, e.g. --deadline 18:00]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
PY=${PY:-.venv/bin/python}   # a python with sparseft[sevennet] and a CUDA torch

MAX_STEPS=${MAX_STEPS:-2000}
PATIENCE=${PATIENCE:-5}
JOBS=${JOBS:-4}            # runs sharing the GPU at a time (SevenNet-0 on small frames leaves it idle)
THREADS=${THREADS:-4}      # CPU threads per run (16 cores / JOBS)
STAGES=${STAGES:-tune,seeds,curves}
SETS=${SETS:-fe_hcp,fe_slab,zrcho,water,acac,ecemc_xtb,aspirin}
METHODS=${METHODS:-sparse-0.5,sparse-1,sparse-3,sparse-10,sparse-20,sparse-3-fisher,sparse-3-gradual,lora-r1,lora-r2,lora-r4,lora-r8,freeze-readout,freeze-last,full}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"

"$PY" benchmarks/frontier/run.py --full --device cuda --threads "$THREADS" --jobs "$JOBS" \
    --max-steps "$MAX_STEPS" --patience "$PATIENCE" --sets "$SETS" --methods "$METHODS" \
    --seeds 0,1,2 --sizes 10,50 --extend --extend-rounds 3 --stage "$STAGES" --sparseft "$(dirname "$PY")/sparseft" "$@"

"$PY" benchmarks/frontier/report.py
echo "report: benchmarks/results/frontier.md (GPU sections are headed '<set> (<steps> steps, cuda)')"
