#!/usr/bin/env bash
# The main job: fine-tune the embedded mini-foundation on the shipped Cu-Au GFN1-xTB data
# with a LoRA adapter (recipes/quickstart.yaml), then check the result's equivariance.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
BIN="$VENV/bin"
"$BIN/sparseft" finetune recipes/quickstart.yaml --overwrite
"$BIN/sparseft" check quickstart-output/merged.model
echo "outputs in quickstart-output/: metrics.json, adapter/, merged.model, plots (*.png)"
