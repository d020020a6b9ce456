#!/usr/bin/env bash
# The reduced CPU grid of issue 20 on SevenNet-0, as run for benchmarks/results/frontier.md
# (2-core CPU shared with other work: one torch thread per run, at most 2 runs at a time).
# Every step reuses the cached runs (benchmarks/frontier/runs/<id>/results.json).
# Usage: benchmarks/frontier/cpu_grid.sh [DEADLINE_HH:MM_UTC]   (no run starts after it)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
DEADLINE=${1:-}
R=(.venv/bin/python benchmarks/frontier/run.py --grid cpu --max-steps 64 --patience 2 --jobs 2 ${DEADLINE:+--deadline $DEADLINE})
ALL=sparse-1,sparse-3,sparse-10,lora-r1,lora-r4,freeze-readout,full
# 1. fe_hcp: every method at the centre of its family's grid (sparse/LoRA 1e-2, freeze/full 1e-3)
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods sparse-1,sparse-3,sparse-10,lora-r1,lora-r4 --lrs 0.01
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods freeze-readout,full --lrs 0.001
# 2. fe_hcp: the full 3-value grid for the three headline methods, one edge extension
"${R[@]}" --sets fe_hcp --stage tune --extend-rounds 1 --methods sparse-3,lora-r4,full
# 3. fe_slab: every method at the lr selected on fe_hcp (no tuning on this set)
"${R[@]}" --sets fe_slab --stage tune --lr-from fe_hcp --methods $ALL
# 4. fe_hcp: sparseft's other support rule at 3 %, fisher (support chosen before training), centre lr
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods sparse-3-fisher --lrs 0.01
# 5. fe_hcp: seeds 1 and 2 at the selected lr for full and sparse 3 %
"${R[@]}" --sets fe_hcp --stage seeds --seed-methods full,sparse-3 --seeds 0,1,2
# 6. second lr values: full (1e-3) and sparse 3 % (1e-2) on fe_slab, sparse 3 % fisher (3e-3) on fe_hcp
"${R[@]}" --sets fe_slab --stage tune --no-extend --methods full --lrs 0.001
"${R[@]}" --sets fe_slab --stage tune --no-extend --methods sparse-3 --lrs 0.01
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods sparse-3-fisher --lrs 0.003
.venv/bin/python benchmarks/frontier/report.py --notes benchmarks/frontier/cpu_notes.md
# --- second session (2026-12-07): new methods and a third set
# 7. fe_hcp: the new methods' own lr grid (3 values, one extension round)
"${R[@]}" --sets fe_hcp --stage tune --extend-rounds 1 --methods sparse-3-padam,rosa-r1-1,lora-r2
# 8. acac: every method at the lr selected on fe_hcp
"${R[@]}" --sets acac --stage tune --lr-from fe_hcp --methods $ALL,sparse-3-padam,rosa-r1-1,lora-r2
# 9. fe_slab: the new methods at the lr selected on fe_hcp
"${R[@]}" --sets fe_slab --stage tune --lr-from fe_hcp --methods sparse-3-padam,rosa-r1-1,lora-r2
.venv/bin/python benchmarks/frontier/report.py --notes benchmarks/frontier/cpu_notes.md
# --- third session (2026-12-07, 13:50-): a fourth set, gradual pruning, learning curves
# 10. ecemc_xtb (EC/EMC clusters, GFN2-xTB: a second chemistry and level of theory): every method at fe_hcp's lr
"${R[@]}" --sets ecemc_xtb --stage tune --lr-from fe_hcp --methods $ALL,sparse-3-padam,rosa-r1-1,lora-r2
# 11. gradual magnitude pruning (sparseft's `gradual` mode) at 3 %: its own grid on fe_hcp, then the other sets
"${R[@]}" --sets fe_hcp --stage tune --extend-rounds 1 --methods sparse-3-gradual
"${R[@]}" --sets fe_slab,acac,ecemc_xtb --stage tune --lr-from fe_hcp --methods sparse-3-gradual
# 12. fe_hcp learning curves (seed 0) at n = 10 and 50; patience in validated epochs ~ 32 steps as at n = all
"${R[@]}" --sets fe_hcp --stage curves --sizes 10 --seeds 0 --patience 16 --methods full,sparse-3,lora-r2,lora-r4
"${R[@]}" --sets fe_hcp --stage curves --sizes 50 --seeds 0 --patience 6 --methods full,sparse-3,lora-r2,lora-r4
# 13. ecemc_xtb: seeds 1 and 2 for full, sparse 3 % and LoRA r2
"${R[@]}" --sets ecemc_xtb --stage seeds --seed-methods full,sparse-3,lora-r2 --seeds 0,1,2
# 14. fe_hcp: STR (faithful; no target density) at its defaults and with thresholds starting higher
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods sparse-str,sparse-str-i6,sparse-str-i4 --lrs 0.003,0.01
# 15. fe_hcp at 4x the budget (256 steps, patience 4): do the orderings hold? each method at its 64-step lr
"${R[@]}" --sets fe_hcp --stage tune --max-steps 256 --patience 4 --lr-from fe_hcp --lr-from-steps 64 --methods full,sparse-3,lora-r2,sparse-3-gradual
# 16. fe_hcp: per-block quotas (allocation: per_block) at 3 %, two lr values
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods sparse-3-perblock --lrs 0.003,0.01
# 17. fe_hcp: STR with thresholds learning 5x faster (threshold_lr_scale 50), weight decay 1e-4 and 1e-2
"${R[@]}" --sets fe_hcp --stage tune --no-extend --methods sparse-str-t50,sparse-str-t50-wd --lrs 0.003
# 18. 256 steps: fe_hcp seeds 1-2 for full and sparse 3 %; fe_slab and acac for full, sparse 3 %, LoRA r2
"${R[@]}" --sets fe_hcp --stage seeds --max-steps 256 --patience 4 --seed-methods full,sparse-3 --seeds 0,1,2
"${R[@]}" --sets fe_slab,acac --stage tune --max-steps 256 --patience 4 --lr-from fe_hcp --lr-from-steps 64 --methods full,sparse-3,lora-r2
# 19. ecemc_xtb at 256 steps: full, sparse 3 %, LoRA r2 (run three at a time, --jobs 3)
"${R[@]}" --sets ecemc_xtb --stage tune --max-steps 256 --patience 4 --jobs 3 --lr-from fe_hcp --lr-from-steps 64 --methods full,sparse-3,lora-r2
.venv/bin/python benchmarks/frontier/report.py --notes benchmarks/frontier/cpu_notes.md
# --- fourth session (2026-12-07, 17:00-): towards convergence, 1024 steps (cosine over the whole budget),
# patience 8 validated epochs, best epoch and early stopping on validation force MAE (the protocol's rule)
# 20. fe_hcp: full, sparse 3 %, LoRA r2 with 3 seeds; fe_slab: the same three, one seed (two processes)
R1024=("${R[@]}" --max-steps 1024 --patience 8 --select-on forces_mae --jobs 1 --lr-from fe_hcp --lr-from-steps 64)
"${R1024[@]}" --sets fe_hcp --stage tune --methods full,sparse-3,lora-r2 &&
  "${R1024[@]}" --sets fe_hcp --stage seeds --seed-methods full,sparse-3,lora-r2 --seeds 1 &
"${R1024[@]}" --sets fe_slab --stage tune --methods full,sparse-3,lora-r2
wait
"${R1024[@]}" --sets fe_hcp --stage seeds --seed-methods full,sparse-3,lora-r2 --seeds 2
# 21. LoRA r8 (the rank grid's cap) at 64 steps: its own lr grid on fe_hcp, then the other sets at that lr
"${R[@]}" --sets fe_hcp --stage tune --extend-rounds 1 --jobs 1 --methods lora-r8
"${R[@]}" --sets fe_slab,acac,ecemc_xtb --stage tune --jobs 1 --lr-from fe_hcp --methods lora-r8
# 22. acac at 1024 steps: full, sparse 3 %, LoRA r2 (one seed)
"${R1024[@]}" --sets acac --stage tune --methods full,sparse-3,lora-r2
.venv/bin/python benchmarks/frontier/report.py --notes benchmarks/frontier/cpu_notes.md
