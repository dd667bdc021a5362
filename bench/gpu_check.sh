#!/usr/bin/env bash
# GPU readiness check: one command, under 8 minutes on one H100 (gpu_check.py
# --budget-s 450 by default; most decisive first, and measurements that do not fit are skipped
# and say so): precision, one run eager, the lab's member sets fused, CUDA graphs, --jobs, resume.
#   bench/gpu_check.sh OUT_DIR [DATA_SOURCE] [gpu_check.py options, e.g. --budget-s 900 on a T4]
# DATA_SOURCE: a folder holding cifar-10-batches-py/, or the folder holding build_cifar10.py and
# cifar10-jpeg.tar.gz (a copy of ../shared/data; on a machine without it, copy it into an ignored
# folder, e.g. .devdata/), default ../shared/data. Writes OUT_DIR/gpu_check.{log,json}.
# Assumes the project's .venv (make install) or a python with labreport installed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: gpu_check.sh OUT_DIR [DATA_SOURCE]}"
src="${2:-$here/../../shared/data}"
py="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$py" ] || py=python3
# labreport from this checkout, installed or not (a GPU image may have torch but not labreport)
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
if [ -d "$src/cifar-10-batches-py" ]; then
    data="$src"
else
    data="$out/data"
    [ -d "$data/cifar-10-batches-py" ] || "$py" "$src/build_cifar10.py" "$data"
fi
"$py" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" 
exec "$py" "$here/gpu_check.py" "$out" --data "$data" --device cuda "${@:3}"
