#!/usr/bin/env bash
# DiffGRM vs the AR baseline on the shared Beauty benchmark with the `cpu` preset (issue 3).
# About 1 h on a 2-core CPU: prepare (~1.5 min, cached after), train each model (< 30 min),
# evaluate each on the full test split. Prints both metric tables.
#   bash bench/beauty_cpu.sh [BEAM]      (default beam 32)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=${DIFFGRM_SHARED:-../shared}/data/amazon-beauty
BEAM=${1:-32}
[ -f runs/beauty/tokenizer_report.json ] || $BIN/diffgrm prepare --dataset "$DATA" --out runs/beauty --quiet
for model in diffgrm ar; do
  [ -f runs/beauty-cpu-$model/model.safetensors ] || \
    $BIN/diffgrm train runs/beauty --model $model --preset cpu --out runs/beauty-cpu-$model
done
for model in diffgrm ar; do
  $BIN/diffgrm evaluate runs/beauty-cpu-$model --split test --beam "$BEAM" --quiet
  echo
done
