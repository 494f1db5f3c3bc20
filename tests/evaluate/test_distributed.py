"""Two gloo processes under torchrun give exactly the flags of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ikl_zoo import load_model
from ikl_zoo.evaluate import EvalResult, evaluate

from .test_exactness import SQUARE, SQUARE_EPS, SQUARE_OPTIONS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LEFT_THREADS = """
import pathlib, sys, torch
from ikl_zoo.evaluate.distributed import process_group_from_environment
with process_group_from_environment(torch.device("cpu")) as shard:
    assert shard.world_size == 2
    import torchvision  # noqa: F401  (as loading CIFAR does, inside the group; it imports torch._dynamo)
names = sorted(path.read_text().strip() for path in pathlib.Path("/proc/self/task").glob("*/comm"))
print(f"rank {shard.rank} threads: {names}")
"""


def _torchrun(arguments: list[str], cwd) -> subprocess.CompletedProcess:
    """Two CPU ranks on this machine."""
    port = _free_port()
    launcher = f"-m torch.distributed.run --nproc-per-node 2 --master-addr 127.0.0.1 --master-port {port}"
    command = [sys.executable, *launcher.split(), *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads threads from /proc (Linux)")
def test_leaving_the_group_stops_its_threads_whatever_was_imported_inside(tmp_path):
    """Threads of a group left running as the interpreter exits abort it at random (SIGABRT), so none may
    outlive the block."""
    (tmp_path / "left_threads.py").write_text(LEFT_THREADS)
    finished = _torchrun(["left_threads.py"], tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    lines = sorted(line for line in finished.stdout.splitlines() if line.startswith("rank "))
    assert len(lines) == 2, finished.stdout
    assert all("gloo" not in line for line in lines), lines


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tiny_folder, sample_dir, cifar10_sample, tmp_path):
    out = tmp_path / "sharded"
    # Square's flags depend on the seed of each chunk (checked below), so a rank seeding by its own count
    # of chunks, or by its rank, would show.
    arguments = (
        f"--n-examples 20 --eps {SQUARE_EPS} --version custom --attacks square "
        f"--attack-option square.n_queries={SQUARE_OPTIONS['n_queries']} --chunk-size 3 --batch-size 3 "
        "--device cpu --no-progress"
    )
    command = [
        "-m", "ikl_zoo.cli", "eval", "--model", str(tiny_folder), "--data-dir", str(sample_dir),
        *arguments.split(), "--out", str(out),
    ]
    finished = _torchrun(command, tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("AutoAttack (final)") == 1, "only rank 0 prints the summary"

    sharded = EvalResult.load(out / "result.json")
    assert sharded.provenance["world_size"] == 2
    chunks = [json.loads(path.read_text()) for path in sorted((out / "chunks").glob("chunk_*.json"))]
    assert [chunk["rank"] for chunk in chunks] == [0, 1, 0, 1, 0, 1, 0]  # dealt round-robin

    x, y = cifar10_sample
    model = load_model(str(tiny_folder))
    single, other_seed = (
        evaluate(model, x, y, seed=seed, chunk_size=3, batch_size=3, **SQUARE)
        for seed in (0, 1)
    )
    assert single.robust_flags != other_seed.robust_flags, "the configuration must be seed-sensitive"
    assert sharded.robust_flags == single.robust_flags and sharded.clean_flags == single.clean_flags
    assert 0 < sum(single.robust_flags) < 20
