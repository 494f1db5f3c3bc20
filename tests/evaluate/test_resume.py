"""A resumed or sharded run is exact: the batch size is part of the run's state, the RNG is seeded per chunk.

AutoAttack's random starts depend on how a chunk is cut into batches. Square with 60 queries at eps 0.03
on the demo ResNet-18 is a cheap configuration whose flags show it (asserted below, so the tests mean
something); the first chunk's labels are made wrong so that AutoAttack skips it and only one chunk of two
images costs attack time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

import ikl_zoo.evaluate.runner as runner_module
from ikl_zoo import load_model
from ikl_zoo.evaluate import evaluate

from .conftest import FAST_APGD, TINY_EPS

SQUARE = dict(
    eps=0.03, version="custom", attacks=["square"], attack_options={"square": {"n_queries": 60}}, seed=0,
    chunk_size=2, progress=False,
)
FAST = dict(eps=TINY_EPS, version="custom", attacks=["apgd-ce"], attack_options=FAST_APGD, progress=False)


class Killed(Exception):
    """Stands for the process being killed."""


class Flaky(nn.Module):
    """A network behind a switch: out of GPU memory once on a batch above ``oom_above`` (a transient
    spike), optionally only on a chunk starting with image ``oom_at``; or killed at the first forward pass.
    The weights are the network's under every setting, so every session is the same run."""

    def __init__(
        self, net: nn.Module, *, oom_above: int | None = None, oom_at: torch.Tensor | None = None,
        killed: bool = False,
    ) -> None:
        super().__init__()
        self.net, self.oom_above, self.oom_at, self.killed = net, oom_above, oom_at, killed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.killed:
            raise Killed
        above = self.oom_above is not None and x.shape[0] > self.oom_above
        if above and (self.oom_at is None or torch.equal(x[0], self.oom_at)):
            self.oom_above = None
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two busy cores: one thread each for the tests' passes is the fastest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo() -> nn.Module:
    return load_model("demo-resnet18")


@pytest.fixture(scope="module")
def square_data(cifar10_sample) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = cifar10_sample
    x, y = x[:4].clone(), y[:4].clone()
    y[:2] = (y[:2] + 1) % 10  # chunk 0 misclassified: AutoAttack skips it
    return x, y


@pytest.fixture(scope="module")
def uninterrupted(demo, square_data, tmp_path_factory):
    """``auto`` (2 on a CPU) runs out of memory at the first pass: every chunk then runs at batch size 1."""
    out = tmp_path_factory.mktemp("oom") / "run"
    return out, evaluate(Flaky(demo, oom_above=1), *square_data, batch_size="auto", out=out, **SQUARE)


@pytest.fixture(scope="module")
def chunk_1_at_batch_size_2(demo, square_data) -> list[bool]:
    x, y = square_data
    return evaluate(demo, x[2:], y[2:], batch_size=2, **{**SQUARE, "seed": 1}).robust_flags


def test_out_of_memory_back_off_holds_for_the_later_chunks_and_on_resume(
    demo, square_data, uninterrupted, chunk_1_at_batch_size_2, tmp_path
):
    run, full = uninterrupted
    assert full.provenance["chunk_batch_sizes"] == [1, 1] and full.batch_size == 1
    assert any("out of memory at batch size 2 in chunk 0" in message for message in full.warnings)
    assert json.loads((run / "batch_size.json").read_text()) == {"batch_size": 1}
    assert full.clean_flags[:2] == [False, False]
    assert chunk_1_at_batch_size_2 != full.robust_flags[2:], "the configuration must depend on the batch size"

    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "chunks" / "chunk_00001.json").unlink()
    (out / "result.json").unlink()
    # A new session would probe 2 again; it goes on at the run's batch size instead.
    resumed = evaluate(Flaky(demo), *square_data, batch_size="auto", out=out, resume=True, **SQUARE)
    assert resumed.provenance["resumed_chunks"] == 1
    assert resumed.provenance["chunk_batch_sizes"] == [1, 1]
    assert resumed.robust_flags == full.robust_flags and resumed.clean_flags == full.clean_flags


def test_probed_batch_size_is_kept_for_the_resumed_session(
    demo, square_data, uninterrupted, chunk_1_at_batch_size_2, tmp_path, monkeypatch
):
    _, full = uninterrupted
    assert chunk_1_at_batch_size_2 != full.robust_flags[2:], "the configuration must depend on the batch size"
    out = tmp_path / "run"
    monkeypatch.setattr(runner_module, "auto_batch_size", lambda *args, **kwargs: 1)
    with pytest.raises(Killed):  # after the probe, before any chunk is finished
        evaluate(Flaky(demo, killed=True), *square_data, batch_size="auto", out=out, **SQUARE)
    assert json.loads((out / "batch_size.json").read_text()) == {"batch_size": 1}
    assert not list((out / "chunks").glob("*.json"))

    probes = []
    monkeypatch.setattr(runner_module, "auto_batch_size", lambda *args, **kwargs: probes.append(2) or 2)
    resumed = evaluate(Flaky(demo), *square_data, batch_size="auto", out=out, resume=True, **SQUARE)
    assert probes == [] and resumed.provenance["chunk_batch_sizes"] == [1, 1]
    assert resumed.robust_flags == full.robust_flags


class NoisyLinear(nn.Module):
    """A randomised defence: a linear classifier with Gaussian noise on its logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) + torch.randn(x.shape[0], 10, device=x.device)


def test_randomised_defence_resumes_exactly(tmp_path):
    generator = torch.Generator().manual_seed(0)
    model = NoisyLinear()
    nn.init.normal_(model.linear.weight, std=0.5, generator=generator)
    nn.init.zeros_(model.linear.bias)
    x = torch.rand(20, 3, 8, 8, generator=generator)
    with torch.no_grad():
        y = model.linear(x.flatten(1)).argmax(1)
        passes = [(model(x).argmax(1) == y).tolist() for _ in range(2)]
    assert passes[0] != passes[1], "the clean pass must be random for the test to mean something"

    options = dict(
        eps=1e-3, version="custom", attacks=["apgd-ce"], seed=0, batch_size=5, chunk_size=5, progress=False,
        attack_options={"apgd": {"n_iter": 2, "n_restarts": 1}},
    )
    out = tmp_path / "run"
    caller_state = torch.get_rng_state()
    full = evaluate(model, x, y, out=out, **options)
    assert torch.equal(torch.get_rng_state(), caller_state), "the caller's RNG state is restored"
    for index in (2, 3):
        (out / "chunks" / f"chunk_0000{index}.json").unlink()
    (out / "result.json").unlink()
    torch.manual_seed(1234)  # another session, another RNG state
    resumed = evaluate(model, x, y, out=out, resume=True, **options)
    assert resumed.provenance["resumed_chunks"] == 2
    assert resumed.clean_flags == full.clean_flags and resumed.robust_flags == full.robust_flags


def test_a_back_off_in_a_later_chunk_is_reported(tiny_model, cifar10_sample, tmp_path):
    x, y = cifar10_sample
    flaky = Flaky(tiny_model, oom_above=5, oom_at=x[10])  # chunk 1's clean pass
    result = evaluate(flaky, x, y, batch_size="auto", chunk_size=10, out=tmp_path / "run", **FAST)
    assert result.provenance["chunk_batch_sizes"] == [10, 5] and result.batch_size == 5
    assert "chunks ran at different batch sizes: 10 (chunk 0), 5 (chunk 1)" in " ".join(result.warnings)
    assert json.loads((tmp_path / "run" / "batch_size.json").read_text()) == {"batch_size": 5}


def test_without_batch_size_file_the_finished_chunks_give_the_size(
    tiny_model, cifar10_sample, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    monkeypatch.setattr(runner_module, "auto_batch_size", lambda *args, **kwargs: 4)
    evaluate(tiny_model, *cifar10_sample, batch_size="auto", chunk_size=10, out=out, **FAST)
    for name in ("batch_size.json", "result.json", "chunks/chunk_00001.json"):
        (out / name).unlink()
    monkeypatch.setattr(runner_module, "auto_batch_size", lambda *args, **kwargs: 8)
    resumed = evaluate(tiny_model, *cifar10_sample, batch_size="auto", chunk_size=10, out=out, resume=True,
                       **FAST)
    assert resumed.provenance["chunk_batch_sizes"] == [4, 4]


RANKS_SCRIPT = """
import sys

import torch
import torch.distributed as dist

import ikl_zoo.evaluate.runner as runner_module
from ikl_zoo.evaluate import evaluate


class OutOfMemoryOnce(torch.nn.Module):
    def __init__(self, net, above):
        super().__init__()
        self.net, self.above = net, above

    def forward(self, x):
        if self.above is not None and x.shape[0] > self.above:
            self.above = None
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
x = torch.rand(16, 3, 8, 8)
with torch.no_grad():
    y = net(x).argmax(1)
runner_module.auto_batch_size = lambda *args, **kwargs: 4 if rank == 0 else 3  # GPUs with other free memory
evaluate(
    OutOfMemoryOnce(net, 2 if rank == 1 else None), x, y, eps=0.01, version="custom", attacks=["apgd-ce"],
    attack_options={"apgd": {"n_iter": 2, "n_restarts": 1}}, batch_size="auto", chunk_size=4, device="cpu",
    out=sys.argv[1], progress=False,
)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_ranks_agree_on_the_batch_size_and_on_a_back_off(tmp_path):
    """Rank 0 probes 4, rank 1 probes 3: both run 3. Rank 1 runs out of memory in its first chunk (3 -> 1):
    from the next round on, rank 0 runs 1 too."""
    script = tmp_path / "ranks.py"
    script.write_text(RANKS_SCRIPT)
    out = tmp_path / "run"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(port), str(script), str(out),
    ]
    finished = subprocess.run(
        command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    chunks = [json.loads((out / "chunks" / f"chunk_0000{index}.json").read_text()) for index in range(4)]
    assert [chunk["rank"] for chunk in chunks] == [0, 1, 0, 1]
    assert [chunk["batch_size"] for chunk in chunks] == [3, 1, 1, 1]
    assert result["provenance"]["chunk_batch_sizes"] == [3, 1, 1, 1] and result["batch_size"] == 1
    assert json.loads((out / "batch_size.json").read_text()) == {"batch_size": 1}
    assert any("chunks ran at different batch sizes: 3 (chunk 0), 1 (chunks 1-3)" in message
               for message in result["warnings"])
