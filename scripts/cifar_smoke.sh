#!/usr/bin/env bash
# A 1-epoch search on 512 shared CIFAR-10 images (C=8, N=1) for every strategy and simplifier mode,
# each cell looked up in the shared NAS-Bench-201 table. Usage: bash scripts/cifar_smoke.sh [OUT] [MODES]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/cifar-smoke}
MODES=${2:-off full}
SHARED=${TOPONAS_SHARED:-../shared}
for strategy in $(.venv/bin/python -c "from toponas.strategies import STRATEGIES; print(*STRATEGIES.names())"); do
  for topo in $MODES; do
    rm -rf "$OUT/$strategy-$topo"
    .venv/bin/toponas search --strategy "$strategy" --topo "$topo" --dataset cifar10 \
      --data "$SHARED/data/cifar10-jpeg.tar.gz" --benchmark "$SHARED/benchmarks/nb201-cifar10.csv" \
      --subset 512 --epochs 1 --channels 8 --cells 1 --out "$OUT/$strategy-$topo" --no-progress \
      | grep -E "^(cell|benchmark|cost) " | sed "s/^/$strategy topo=$topo  /"
  done
done
