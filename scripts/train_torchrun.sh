#!/usr/bin/env bash
# Synthetic-tumor training on all GPUs of one machine with torchrun (DDP, NCCL, AMP on CUDA).
# torchrun sets RANK / WORLD_SIZE / LOCAL_RANK itself, so main.py gets no --distributed.
# --batch_size is per process: the effective batch is NPROC x 2.
#
#   bash scripts/train_torchrun.sh                      # every visible GPU
#   NPROC=4 DATA_ROOT=/path/to/data bash scripts/train_torchrun.sh
#   NPROC=2 bash scripts/train_torchrun.sh --device cpu --max_epochs 2   # gloo on CPU (smoke test)
#
# Variables: NPROC (processes; default: number of GPUs, 1 without any), DATA_ROOT, DATAFOLDS,
# FOLD, MODEL, JSON (default: healthy.json).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh  # DATA_ROOT, DATAFOLDS, FOLD, MODEL, PYTHON, TORCHRUN
JSON="${JSON:-$DATAFOLDS/healthy.json}"
NPROC="$(processes_per_node)"

"$TORCHRUN" --standalone --nproc_per_node="$NPROC" main.py --optim_lr=4e-4 --batch_size=2 \
  --lrschedule=warmup_cosine --optim_name=adamw --model_name="$MODEL" --val_every=200 --max_epochs=4000 \
  --save_checkpoint --workers=2 --cache_num=200 --val_overlap=0.5 --syn \
  --logdir="runs/synt.no_pretrain.$MODEL$FOLD.ddp" --train_dir "$DATA_ROOT" --val_dir "$DATA_ROOT" \
  --json_dir "$JSON" "$@"
