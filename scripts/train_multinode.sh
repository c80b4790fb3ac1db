#!/usr/bin/env bash
# Synthetic-tumor training over several machines with torchrun: run this script once on every
# node, with the same MASTER_ADDR / MASTER_PORT / NNODES and each node's own NODE_RANK.
#
#   # node 0 (its address is 10.0.0.1):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 DATA_ROOT=/shared/data bash scripts/train_multinode.sh
#   # node 1:
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 DATA_ROOT=/shared/data bash scripts/train_multinode.sh
#
# Every node needs the data root and the datalists at the same paths (a shared file system);
# only rank 0 writes the run folder. Variables: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT,
# NPROC (GPUs per node; default: all visible), DATA_ROOT, DATAFOLDS, FOLD, MODEL, JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
NNODES="${NNODES:-2}"
NODE_RANK="${NODE_RANK:?set NODE_RANK to the index of this node, 0 .. NNODES-1}"
MASTER_ADDR="${MASTER_ADDR:?set MASTER_ADDR to the address of the node with NODE_RANK=0}"
MASTER_PORT="${MASTER_PORT:-29500}"
source scripts/common.sh  # DATA_ROOT, DATAFOLDS, FOLD, MODEL, PYTHON, TORCHRUN
JSON="${JSON:-$DATAFOLDS/healthy.json}"
NPROC="$(processes_per_node)"

"$TORCHRUN" --nnodes="$NNODES" --node_rank="$NODE_RANK" --nproc_per_node="$NPROC" \
  --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT" main.py --optim_lr=4e-4 --batch_size=2 \
  --lrschedule=warmup_cosine --optim_name=adamw --model_name="$MODEL" --val_every=200 --max_epochs=4000 \
  --save_checkpoint --workers=2 --cache_num=200 --val_overlap=0.5 --syn \
  --logdir="runs/synt.no_pretrain.$MODEL$FOLD.multinode" --train_dir "$DATA_ROOT" --val_dir "$DATA_ROOT" \
  --json_dir "$JSON" "$@"
