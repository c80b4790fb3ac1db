# Shared by the training / evaluation scripts (sourced, not run): the variables every one of them
# takes, with their defaults, and the GPU count the torchrun launchers default to.
# Variables: DATA_ROOT (data root, training and validation), DATAFOLDS (folder of the datalists),
# FOLD (fold index, names the run as the original's $fold), MODEL (unet | swin_unetrv2),
# PYTHON, TORCHRUN.
DATA_ROOT="${DATA_ROOT:-data/phantom}"
DATAFOLDS="${DATAFOLDS:-datafolds}"
FOLD="${FOLD:-0}"
MODEL="${MODEL:-unet}"
PYTHON="${PYTHON:-python}"
TORCHRUN="${TORCHRUN:-torchrun}"

# Processes per node for torchrun: NPROC when set, else every visible GPU, else 1 (CPU, gloo).
processes_per_node() {
  local n="${NPROC:-}"
  if [ -z "$n" ]; then
    n=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
    [ "$n" -ge 1 ] || n=1
  fi
  echo "$n"
}
