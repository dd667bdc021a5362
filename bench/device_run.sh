#!/usr/bin/env bash
# Everything a GPU machine without network access should run, as one command: the CIFAR-10 copy built from
# the carried archive, bench/gpu_check.sh (fused training of the lab's member sets included), then
# the CUDA tests (bench/gpu_tests.txt: the fused probe's against the trainer among them). From the
# repository root there:
#   bash bench/device_run.sh OUT_DIR [BUDGET_S]      (BUDGET_S: gpu_check's, default 420)
# Before the call, here: mkdir -p .devdata && cp ../shared/data/build_cifar10.py
#   ../shared/data/cifar10-jpeg.tar.gz .devdata/   (.devdata is git-ignored; carry it)
# Copy .devdata/ to the machine with the checkout. At most ~9.5 minutes: 15 s of data, gpu_check's
# budget, up to 120 s of tests. Writes 6 files under OUT_DIR, at most 2 folders down.
set -uo pipefail
out="${1:?usage: device_run.sh OUT_DIR [BUDGET_S]}"
budget="${2:-420}"  # with 15 s of data and <= 120 s of tests: inside the tool's 600 s per call
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONUNBUFFERED=1
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/nvidia-smi.csv" 2>&1 || true
data="${DEVICE_DATA:-/tmp/labreport-cifar}"  # a folder holding cifar-10-batches-py is used as it is
py="${PYTHON:-python3}"  # there: the image's python3, which holds torch
if [ ! -d "$data/cifar-10-batches-py" ]; then
    "$py" "$here/../.devdata/build_cifar10.py" "$data" >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
fi
bash "$here/gpu_check.sh" "$out/gc" "$data" --budget-s "$budget"
gc=$?
cd "$here/.." || exit 1
timeout 120 "$py" -m pytest -q -p no:cacheprovider -m gpu $(cat "$here/gpu_tests.txt") 2>&1 | tee "$out/pytest-gpu.log"
pt=${PIPESTATUS[0]}
echo "gpu_check exit $gc, pytest -m gpu exit $pt"
exit $((gc != 0 || pt != 0))
