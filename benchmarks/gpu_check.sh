#!/usr/bin/env bash
# The GPU check: everything that needs a CUDA device, in under 10 minutes on one GPU (at most 8 by
# its parts' time limits; about 3 when all goes well).
#
# Usage: bash benchmarks/gpu_check.sh OUT_DIR [COCO_TRAIN_JSON:IMAGE_FOLDER]
#
#   1. the test suite's CUDA tests (pytest -m cuda): mask heads GPU = CPU, AMP training steps,
#      training, evaluation and resume on CUDA for Mask R-CNN and CondInst
#   2. training throughput of the R50-FPN point-supervised Mask R-CNN at COCO size (short side 800,
#      batch 2), 50 iterations, float32 and AMP: images/s and peak memory (train_throughput.py)
#   3. the same for Implicit PointRend with point augmentation
#   4. two NCCL processes on one GPU: whether NCCL allows it (it refuses two ranks on one device on
#      most versions; the probe records what this one says)
#   5. inference time of the three RoI mask heads at the reference's sizes (head_speed.py)
#
# COCO_TRAIN_JSON:IMAGE_FOLDER gives real images for 2 and 3 (P10 simulated from their masks);
# without it they train on generated 800 px images. Each part has its own time limit, and a part
# that fails does not stop the others; every part's output goes to OUT_DIR/<part>.txt (and .json).
# PYTHON selects the interpreter (default python3).
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [COCO_TRAIN_JSON:IMAGE_FOLDER]}
coco=${2:-}
py=${PYTHON:-python3}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here" || exit 2
mkdir -p "$out"
export PYTHONUNBUFFERED=1 POINTSUP_NO_PROGRESS=1

part() {  # part NAME SECONDS COMMAND...: run with a time limit, output to OUT_DIR/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s)"
  local started=$SECONDS
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local status=$?
  tail -n 25 "$out/$name.txt"
  echo "== $name: exit status $status after $((SECONDS - started)) s"
}

data=()
[ -n "$coco" ] && data=(--coco "$coco")
coco_size=("data.min_size_train=[800]" "data.max_size_train=1333")

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__)"
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

part cuda_tests 150 "$py" -m pytest -q -m cuda -p no:cacheprovider tests/modeling/test_cuda_parity.py \
  tests/engine/test_trainer_cuda.py tests/modeling/test_postprocess.py
part throughput_maskrcnn 100 "$py" benchmarks/train_throughput.py --device cuda --iterations 50 --warmup 5 --workers 4 \
  "${data[@]}" --json "$out/throughput_maskrcnn.json" "${coco_size[@]}"
part throughput_implicit 100 "$py" benchmarks/train_throughput.py --config implicit_pointrend_R_50_FPN_3x_points_point_aug \
  --device cuda --iterations 50 --warmup 5 --workers 4 "${data[@]}" --json "$out/throughput_implicit.json" "${coco_size[@]}"
part nccl_two_ranks_one_gpu 45 "$py" benchmarks/nccl_probe.py
part head_speed 75 "$py" benchmarks/head_speed.py --device cuda --repeats 10 --warmup 3
echo "== gpu check done; outputs in $out"
