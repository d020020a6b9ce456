#!/usr/bin/env bash
# The main job until `sparseft finetune` lands: build a small MACE model, show its
# weight catalogue and a selector, and run the equivariance check on it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
BIN="$VENV/bin"
mkdir -p demo-output
"$BIN/sparseft" tiny-model demo-output/tiny.model --overwrite
"$BIN/sparseft" inspect demo-output/tiny.model --group kind
"$BIN/sparseft" inspect demo-output/tiny.model --select "kinds=skip,contraction elements=O"
"$BIN/sparseft" check demo-output/tiny.model
