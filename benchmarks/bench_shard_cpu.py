"""Scale-out of ``ikl-zoo eval`` over processes on CPU: one process against ``torchrun`` with N gloo ranks.

Each process gets one thread, so N ranks use N cores; the chunks are dealt round-robin and rank 0 merges.
Seeds go by chunk, not by rank, so the flags must be identical to the single process's; the ratio of the
two wall-clock times (start-up, model loading and the merge included) is the scale-out efficiency that
several GPUs would see with NCCL. The model is the demo ResNet-18 (pyautoattack's plainly trained test
checkpoint, not IKL-AT) on the 20 real CIFAR-10 test images foolbox ships, at eps 1/255 where some survive.

    python benchmarks/bench_shard_cpu.py                   # 2 ranks, about 2 minutes on 2 idle cores
    python benchmarks/bench_shard_cpu.py --attacks apgd-ce,apgd-t --ranks 2
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(command: list[str], label: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"{label} failed:\n{finished.stderr[-3000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--eps", default="1/255")
    parser.add_argument("--attacks", default="apgd-ce")
    parser.add_argument(
        "--attack-option", action="append", default=None,
        help="Passed to ikl-zoo eval (default apgd.n_restarts=1, as standard AutoAttack runs APGD-CE).",
    )
    parser.add_argument("--chunk-size", type=int, default=5, help="20 images: 4 chunks of 5 by default")
    args = parser.parse_args()

    from ikl_zoo.evaluate import EvalResult

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        cli = [sys.executable, "-m", "ikl_zoo.cli"]
        subprocess.run([*cli, "sample-data", "--out", str(root / "data")], check=True, capture_output=True)
        evaluation = [
            "eval", "--model", "demo-resnet18", "--data-dir", str(root / "data"), "--n-examples", "20",
            "--eps", args.eps, "--version", "custom", "--attacks", args.attacks, "--seed", "0",
            "--chunk-size", str(args.chunk_size), "--batch-size", str(args.chunk_size), "--device", "cpu",
            "--no-progress",
        ]
        for option in args.attack_option or ["apgd.n_restarts=1"]:
            evaluation += ["--attack-option", option]
        single_s = run([*cli, *evaluation, "--out", str(root / "single")], "one process")
        launcher = [
            sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(args.ranks),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
        ]
        sharded_command = [*launcher, "-m", "ikl_zoo.cli", *evaluation, "--out", str(root / "sharded")]
        sharded_s = run(sharded_command, "torchrun")
        single = EvalResult.load(root / "single" / "result.json")
        sharded = EvalResult.load(root / "sharded" / "result.json")

    n = len(single.robust_flags)
    same = sum(a == b for a, b in zip(single.robust_flags, sharded.robust_flags, strict=True))
    setting = f"eps {args.eps}, {args.attacks}, chunks of {args.chunk_size}"
    print(f"ikl-zoo eval, demo ResNet-18, {n} images, {setting}")
    print(f"  1 process, 1 thread: {single_s:6.1f} s wall, robust {100 * single.robust_acc:.1f}%")
    print(f"  {args.ranks} ranks, 1 thread: {sharded_s:6.1f} s wall, robust {100 * sharded.robust_acc:.1f}%")
    print(f"  speed-up {single_s / sharded_s:.2f}x on {args.ranks} ranks; flags identical on {same}/{n}")
    return 0 if same == n else 1


if __name__ == "__main__":
    sys.exit(main())
