#!/usr/bin/env bash
# Train the bundled default model (stereospike_ros/weights/default.safetensors) from scratch:
# simulate the scene-family data (80 randomized `mixed` training recordings of 3 s, 6
# validation recordings, 4 test recordings per family; about 19 GB), train stereospike width
# 0.25 on 128x160 crops on the CPU with the loss in log depth and the right camera shifted by
# up to 2 px per sample, export the best epoch, and score it per family against StereoSGBM
# and a constant depth. The bundled weights are seed 2 of this recipe, the best on
# validation of ten runs (without the shift seeds 0-2, with it seeds 0-3, and three other
# shift settings, one seed each): seeds of one recipe differ by up to 33 cm of validation MDE
# (this one's four by 21), so train a few and keep the best validation figures
# (docs/benchmarks.md, "Seeds" and "A disparity shift in training").
# Usage: tools/train_default_model.sh [FAMILY_DIR] [RUN_DIR]   (re-run to resume)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FAM=${1:-fam}
RUN=${2:-runs/default}

$PY -m stereospike_ros benchmark families --out "$FAM" --build-only --jobs 2 \
  --train-recordings 80
$PY -m stereospike_ros train --root "$FAM/data" --split "$FAM/split.json" --out "$RUN" \
  --model stereospike --width 0.25 --heads 1 2 3 4 \
  --epochs 60 --lr 5e-4 --milestones 40 52 --gamma 0.5 --level-weight 0.5 --loss-scale log \
  --crop 128x160 --disparity-shift 2 --steps-per-epoch 500 --val-frames 40 --threads 2 --seed 2 \
  --quiet --export-default --note "trained on simulated scenes only (benchmark families: \
80 randomized recordings of the mixed family), not MVSEC; scores per scene family in \
docs/benchmarks.md" "${@:3}"
$PY -m stereospike_ros benchmark families --out "$FAM" --train-recordings 80 --pictures \
  --checkpoints "$RUN/best.safetensors" --labels "bundled w0.25" --threads 2
