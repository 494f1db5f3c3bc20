#!/usr/bin/env bash
# The GPU checks, in one run of under 8 minutes on an H100/H200, install included:
#   1. the evaluator at each precision (ieee, pytorch, bf16): WRN-28-10 and WRN-34-10 fwd+input-gradient
#      images/s and TFLOP/s against the card's peak; APGD-CE on 1,000 images against a direct pyautoattack call at
#      the same precision (time ratio, flag agreement); flags between precisions (and compiled) on a briefly
#      PGD-trained robust net; standard AutoAttack on 10,000 images extrapolated from pass counts; compile on/off;
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
run gpu_eval 300 python3 benchmarks/gpu_eval.py --budget-s 240
run gpu_train 80 python3 benchmarks/gpu_train.py --budget-s 50
run bench_losses 50 python3 benchmarks/bench_losses.py --device cuda
