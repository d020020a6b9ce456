#!/usr/bin/env bash
# The CUDA paths end to end on a GPU machine, in under 5 minutes; prints ratios and writes the
# records to $RESULTS (default: $OUT when the device tool sets it, else benchmarks/results/gpu/).
#
#   bash scripts/gpu_wheels.sh                          # here: the mace-torch stack as wheels in .whl/
#   device run, carry [".whl"]:  bash benchmarks/gpu_check.sh
#
# 1. the CUDA unit tests (training, adapters, calculator, cuEquivariance; 2-GPU nccl DDP if two GPUs)
# 2. a short fine-tune of each method on the GPU (epoch time vs full fine-tuning), merge + check
# 3. MD steps: sparseft.Calculator vs MACECalculator on the GPU (benchmarks/md_step.py)
# 4. training-step and inference ratios on the mp0-medium-shaped model (benchmarks/overhead.py)
# 5. load/save/float64 times, file sizes and peak GPU memory per method (benchmarks/foundation_size.py)
# 6. data-parallel scaling over the GPUs, when there are two or more (benchmarks/ddp_scaling.py)
# 7. cuEquivariance vs e3nn speed (benchmarks/cueq_speed.py)
set -uo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
PY=${PY:-python3}
if ! $PY -c "import mace" 2>/dev/null; then
    [[ -d .whl ]] || { echo "mace-torch is missing and there is no .whl/ (run scripts/gpu_wheels.sh here)"; exit 2; }
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
RESULTS=${RESULTS:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$RESULTS"
LOG=$RESULTS/gpu_check.log
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"; }
{
    nvidia-smi -L; $PY -c "import torch, mace, e3nn; print('torch', torch.__version__, 'mace', mace.__version__, 'e3nn', e3nn.__version__)"
} 2>&1 | tee -a "$LOG"

step "1. CUDA unit tests"
timeout 120 $PY -m pytest -q -p no:cacheprovider -m "" tests/test_cuda.py tests/test_cueq.py -rs 2>&1 | tee -a "$LOG"

step "2. one short fine-tune per method on the GPU (embedded foundation, quick-start data, 2 epochs)"
TMP=$(mktemp -d)
for method in "sparse, l1: 0.3" "lora, rank: 8" "freeze, select: {layers: [1]}" "full"; do
    name=${method%%,*}
    cat > "$TMP/$name.yaml" <<YAML
base: {model: embedded, dtype: float32, device: auto}
data: {train: "embedded:train.xyz", valid: "embedded:valid.xyz", E0s: foundation}
adapters: [{method: $method}]
train: {lr: 5.0e-3, epochs: 2, batch_size: 8, target_density: 0.03, seed: 0}
output: {directory: $TMP/$name}
YAML
    timeout 60 $PY -m sparseft finetune "$TMP/$name.yaml" --quiet 2>&1 | tail -2 | tee -a "$LOG"
done
$PY - "$TMP" <<'PYEOF' 2>&1 | tee -a "$LOG"
import csv, sys
tmp = sys.argv[1]
epoch = {m: min(float(r["seconds"]) for r in csv.DictReader(open(f"{tmp}/{m}/history.csv"))) for m in ("sparse", "lora", "freeze", "full")}
for m, s in epoch.items():
    print(f"{m:7s} epoch {s:6.2f} s  ratio to full {s / epoch['full']:.2f}")
PYEOF
timeout 60 $PY -m sparseft check "$TMP/sparse/merged.model" 2>&1 | tail -3 | tee -a "$LOG"

step "3. MD steps on the GPU"
timeout 90 $PY benchmarks/md_step.py --device cuda --quick --atoms 100 500 --output "$RESULTS/md_step_gpu.md" 2>&1 | tail -12 | tee -a "$LOG"

step "4. training-step / inference ratios, mp0-medium shape"
timeout 120 $PY benchmarks/overhead.py --device cuda --model mp0-medium --dtype float32 --quick --output "$RESULTS/overhead_gpu.md" 2>&1 | tail -30 | tee -a "$LOG"

step "5. load/save, file sizes, peak GPU memory per method"
timeout 120 $PY benchmarks/foundation_size.py --device cuda --output "$RESULTS/foundation_size_gpu.md" 2>&1 | tail -25 | tee -a "$LOG"

if [[ "$NGPU" -ge 2 ]]; then
    step "6. data-parallel scaling over $NGPU GPUs"
    ranks=1; r=2; while [[ $r -le $NGPU ]]; do ranks="$ranks,$r"; r=$((r * 2)); done
    timeout 180 $PY benchmarks/ddp_scaling.py --device cuda --ranks "$ranks" --output "$RESULTS/ddp_scaling_gpu.md" 2>&1 | tail -10 | tee -a "$LOG"
else
    step "6. data-parallel scaling: skipped (one GPU)"
fi

step "7. cuEquivariance vs e3nn (l=1 model; fast only with cuequivariance-ops-torch installed)"
timeout 90 $PY benchmarks/cueq_speed.py --device cuda --like mp0-medium --atoms 256 2>&1 | grep -v Warn | tail -4 | tee -a "$LOG"
rm -rf "$TMP"
echo "records in $RESULTS"
