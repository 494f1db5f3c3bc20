#!/usr/bin/env bash
# The GPU checks, in one run of under 8 minutes on an H100/H200:
#   1. the evaluator against a direct batch-200 pyautoattack call on a WRN-28-10: fwd+bwd throughput and
#      TFLOP/s, APGD-CE (ratio, flags, TF32 default precision), the standard suite per attack (ratio);
#   2. IKL-AT training throughput against a plain TRADES step on a WRN-34-10;
#   3. the O(C) IKL wMSE against the pairwise form at ImageNet size (time and peak memory).
#
# The GPU machine has torch but no registry access, so ikl-zoo and the packages its image lacks travel as
# wheels in .whl/ (build them with `benchmarks/gpu_wheels.sh`). Figures land in $OUT (or benchmarks/out).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/out}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "no wheels to install: run benchmarks/gpu_wheels.sh first (every part needs ikl-zoo)"; exit 1; }
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, ikl_zoo; print('torch', torch.__version__, 'ikl_zoo', ikl_zoo.__version__)" | tee -a "$out/gpu.txt"

# Each part sizes its work to a budget below its hard limit and prints its figures as it goes; a part that
# fails or is stopped at its limit does not stop the next one.
run() {  # name, time limit in seconds, command...
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit}s)"
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    echo "=== $name exit ${PIPESTATUS[0]}"
}
run gpu_eval 330 python3 benchmarks/gpu_eval.py --budget-s 240
run gpu_train 90 python3 benchmarks/gpu_train.py --budget-s 60
run bench_losses 60 python3 benchmarks/bench_losses.py --device cuda
