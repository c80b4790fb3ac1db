#!/usr/bin/env bash
# Train a UNet on real annotated tumors (fold FOLD of the real_k datalists), no synthesis:
# the baseline of the original project, with its flags and run names.
#
#   bash scripts/train_real.sh                                  # phantom root data/phantom, fold 0
#   DATA_ROOT=/path/to/data FOLD=2 bash scripts/train_real.sh   # a real data root, fold 2
#   MIX=1 bash scripts/train_real.sh                            # real + healthy with --syn (mix_k lists)
#
# Variables: DATA_ROOT, DATAFOLDS (folder of real_k.json / mix_k.json), FOLD, MODEL, PORT, MIX.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh  # DATA_ROOT, DATAFOLDS, FOLD, MODEL, PYTHON, TORCHRUN
PORT="${PORT:-$((13000 + RANDOM % 1000))}"
train_path="$DATA_ROOT"
val_path="$DATA_ROOT"

if [ "${MIX:-0}" = "1" ]; then
  datalist="$DATAFOLDS/mix_$FOLD.json"; run="mix.no_pretrain.$MODEL$FOLD"; syn=(--syn)
else
  datalist="$DATAFOLDS/real_$FOLD.json"; run="real.no_pretrain.$MODEL$FOLD"; syn=()
fi

"$PYTHON" main.py --optim_lr=4e-4 --batch_size=2 --lrschedule=warmup_cosine --optim_name=adamw \
  --model_name="$MODEL" --val_every=200 --max_epochs=4000 --save_checkpoint --workers=2 --noamp \
  --distributed --dist-url="tcp://127.0.0.1:$PORT" --cache_num=200 --val_overlap=0.5 "${syn[@]}" \
  --logdir="runs/$run" --train_dir "$train_path" --val_dir "$val_path" --json_dir "$datalist" "$@"
