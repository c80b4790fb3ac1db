#!/usr/bin/env bash
# README command 1: the main job on the built-in phantom data.
# Step 1 generates the phantom data root with PNG previews of every case.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT="${DATA_ROOT:-data/phantom}"
SEED="${SEED:-0}"

if [ -f "$DATA_ROOT/phantom_info.json" ]; then
  echo "[demo] phantom data already in $DATA_ROOT (delete it to regenerate)"
else
  python scripts/make_phantom_data.py --out "$DATA_ROOT" --n_healthy 8 --n_tumor 4 --seed "$SEED"
fi
echo "[demo] previews: $DATA_ROOT/previews/"
