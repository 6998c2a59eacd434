#!/usr/bin/env bash
# Set up TopoNAS in ./.venv on a fresh machine: PyTorch (CPU build where there is no GPU), then the package.
# Usage: bash scripts/setup.sh            (re-running is cheap: installed packages are kept)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # A GPU: the default PyPI build of torch carries CUDA.
    $PIP install -q "${TOPONAS_TORCH:-torch>=2.1}"
  else
    # No GPU: pin the release whose CPU build this project is developed with (a bare `torch`
    # would pull a multi-GB CUDA build). Set TOPONAS_TORCH to choose another spec.
    $PIP install -q "${TOPONAS_TORCH:-torch==2.13.0}"
  fi
fi
$PIP install -q -e ".[dev,digits,report,ray,restoration]"
.venv/bin/python -c "import torch, toponas; print('toponas', toponas.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
