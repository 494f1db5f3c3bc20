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


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tiny_folder, sample_dir, cifar10_sample, tmp_path):
    out = tmp_path / "sharded"
    port = _free_port()
    launcher = f"-m torch.distributed.run --nproc-per-node 2 --master-addr 127.0.0.1 --master-port {port}"
    # Square's flags depend on the seed of each chunk (checked below), so a rank seeding by its own count
    # of chunks, or by its rank, would show.
    arguments = (
        f"--n-examples 20 --eps {SQUARE_EPS} --version custom --attacks square "
        f"--attack-option square.n_queries={SQUARE_OPTIONS['n_queries']} --chunk-size 3 --batch-size 3 "
        "--device cpu --no-progress"
    )
    command = [
        sys.executable, *launcher.split(), "-m", "ikl_zoo.cli", "eval", "--model", str(tiny_folder),
        "--data-dir", str(sample_dir), *arguments.split(), "--out", str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
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
