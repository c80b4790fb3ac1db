#!/usr/bin/env bash
# Evaluate a trained run on the validation list of a datalist: predictions in the original
# geometry under outs/<run>/<overlap>/pred/, metrics.csv (Dice, NSD, lesion detection), summary.json.
#
#   bash scripts/evaluate.sh                                       # runs/synt.no_pretrain.unet0 on real_0.json
#   RUN=real.no_pretrain.unet1 FOLD=1 bash scripts/evaluate.sh
#   DATA_ROOT=/path/to/data JSON=datafolds/lits.json bash scripts/evaluate.sh
#
# Variables: DATA_ROOT, DATAFOLDS, FOLD, MODEL, RUN (run folder under runs/), JSON (datalist),
# SAVE_DIR (output root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh  # DATA_ROOT, DATAFOLDS, FOLD, MODEL, PYTHON, TORCHRUN
RUN="${RUN:-synt.no_pretrain.$MODEL$FOLD}"
JSON="${JSON:-$DATAFOLDS/real_$FOLD.json}"
SAVE_DIR="${SAVE_DIR:-outs}"
val_path="$DATA_ROOT"

"$PYTHON" validation.py --model="$MODEL" --val_overlap=0.75 --val_dir "$val_path" --json_dir "$JSON" \
  --log_dir "runs/$RUN" --save_dir "$SAVE_DIR" "$@"
