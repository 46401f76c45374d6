#!/usr/bin/env bash
# Train the bundled default model (stereospike_ros/weights/default.safetensors) from scratch:
# simulate 16 training recordings and 2 validation recordings (other seeds, scenes and motions),
# train stereospike width 0.25 on 128x160 crops on the CPU, export the best epoch.
# Usage: tools/train_default_model.sh [DATA_DIR] [RUN_DIR]   (re-run to resume)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${1:-runs/default_data}
RUN=${2:-runs/default}
mkdir -p "$DATA"

simulate() {  # NAME SEED SCENE MOTION SECONDS
  [ -f "$DATA/$1_gt.hdf5" ] || $PY -m stereospike_ros simulate --out "$DATA" --name "$1" \
    --seed "$2" --scene "$3" --motion "$4" --duration "$5" --noise 0.1 --quiet
}
simulate train1 1 room hover 6
simulate train2 2 corridor forward 6
simulate train3 3 boxes sweep 6
simulate train4 4 room lateral 6
simulate train5 5 boxes hover 6
simulate train6 6 corridor vertical 6
simulate train7 7 room forward 6
simulate train8 8 boxes lateral 6
simulate train9 9 corridor sweep 6
simulate train10 10 boxes vertical 6
simulate train11 11 room hover 6
simulate train12 12 corridor lateral 6
simulate train13 13 boxes forward 6
simulate train14 14 room vertical 6
simulate train15 15 corridor hover 6
simulate train16 16 room sweep 6
simulate val1 101 boxes forward 4
simulate val2 102 room sweep 4

cat > "$DATA/split.json" <<JSON
{"name": "sim_default", "sequences": {
  "train1": {"part": "train"}, "train2": {"part": "train"}, "train3": {"part": "train"},
  "train4": {"part": "train"}, "train5": {"part": "train"}, "train6": {"part": "train"},
  "train7": {"part": "train"}, "train8": {"part": "train"}, "train9": {"part": "train"},
  "train10": {"part": "train"}, "train11": {"part": "train"}, "train12": {"part": "train"},
  "train13": {"part": "train"}, "train14": {"part": "train"}, "train15": {"part": "train"},
  "train16": {"part": "train"},
  "val1": {"part": "val"}, "val2": {"part": "val"}}}
JSON

$PY -m stereospike_ros train --root "$DATA" --split "$DATA/split.json" --out "$RUN" \
  --model stereospike --width 0.25 --heads 1 2 3 4 \
  --epochs 40 --lr 5e-4 --milestones 28 35 --gamma 0.5 --level-weight 0.5 \
  --crop 128x160 --steps-per-epoch 500 --val-frames 40 --threads 1 --seed 0 \
  --quiet --export-default "${@:3}"
