#!/usr/bin/env bash
# Create .venv (once) with sparseft and its test tools installed.
# Keeps a torch the user already has (system site-packages); otherwise installs
# torch==${TORCH_VERSION:-2.13.0} (pass TORCH_INDEX_URL to choose a CUDA/CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
stamp="$VENV/.sparseft-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "bootstrap: reusing the torch already installed for $PYTHON"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "bootstrap: installing torch==${TORCH_VERSION:-2.13.0}"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$VENV/bin/pip" install --quiet "torch==${TORCH_VERSION:-2.13.0}" --index-url "$TORCH_INDEX_URL"
  else
    "$VENV/bin/pip" install --quiet "torch==${TORCH_VERSION:-2.13.0}"
  fi
fi
"$VENV/bin/pip" install --quiet -e ".[test]"
# The SevenNet backend: sevenn without its e3nn>=0.5 pin (mace-torch pins e3nn 0.4.4; see
# sparseft/backends/sevennet/_import.py); its other run-time dependencies come with .[test].
"$VENV/bin/pip" install --quiet --no-deps "sevenn==${SEVENN_VERSION:-0.13.0}"
touch "$stamp"
