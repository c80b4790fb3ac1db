#!/usr/bin/env bash
# Train a UNet on synthetic tumors painted into healthy scans (the label-free setting):
# the original project's command, with its flags and run names.
#
#   bash scripts/train_syn.sh                                  # phantom root data/phantom
#   DATA_ROOT=/path/to/data FOLD=0 bash scripts/train_syn.sh   # a real data root (original layout)
#   bash scripts/train_syn.sh --max_epochs 10 --val_every 5    # extra flags are appended (last one wins)
#
# Variables: DATA_ROOT (training and validation root), DATAFOLDS (folder of the datalists),
# FOLD (names the run, as the original's $fold), MODEL (unet | swin_unetrv2), PORT (rendezvous port).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh  # DATA_ROOT, DATAFOLDS, FOLD, MODEL, PYTHON, TORCHRUN
PORT="${PORT:-$((12000 + RANDOM % 1000))}"
train_path="$DATA_ROOT"
val_path="$DATA_ROOT"

"$PYTHON" main.py --optim_lr=4e-4 --batch_size=2 --lrschedule=warmup_cosine --optim_name=adamw \
  --model_name="$MODEL" --val_every=200 --max_epochs=4000 --save_checkpoint --workers=2 --noamp \
  --distributed --dist-url="tcp://127.0.0.1:$PORT" --cache_num=200 --val_overlap=0.5 --syn \
  --logdir="runs/synt.no_pretrain.$MODEL$FOLD" --train_dir "$train_path" --val_dir "$val_path" \
  --json_dir "$DATAFOLDS/healthy.json" "$@"
