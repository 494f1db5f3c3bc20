"""The run directory: one evaluation at a time (lock.json), a finished run shown again, earlier runs' time."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

import ikl_zoo.evaluate.run as run_module
from ikl_zoo.cli import main
from ikl_zoo.errors import EvaluationError
from ikl_zoo.evaluate import EvalResult, evaluate, format_summary

from .conftest import FAST_APGD, TINY_EPS

FAST = dict(
    eps=TINY_EPS, version="custom", attacks=["apgd-ce"], attack_options=FAST_APGD, progress=False,
    chunk_size=10, batch_size=10,
)
SINCE = "2026-12-04T06:30:12+00:00"


def _lock(out, *, pid: int, host: str | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    holder = {"pid": pid, "host": host or socket.gethostname(), "since": SINCE}
    (out / "lock.json").write_text(json.dumps(holder))


def _gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_directory_in_use_is_refused_at_once_naming_the_holder(
    linear_model, cifar10_sample, tmp_path
):
    out = tmp_path / "run"
    _lock(out, pid=os.getppid())  # the test's parent: alive all along
    with pytest.raises(EvaluationError) as error:
        evaluate(linear_model, *cifar10_sample, out=out, resume=True, **FAST)
    assert str(error.value) == (
        f"{out} is in use by pid {os.getppid()} on host {socket.gethostname()} since 2026-12-04 06:30 UTC: "
        "wait for it to finish, or use another --out"
    )
    assert sorted(path.name for path in out.iterdir()) == ["lock.json"], "nothing written, the lock kept"


def test_the_command_is_refused_before_loading_anything(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _lock(out, pid=os.getppid())
    monkeypatch.setattr(run_module, "_load", lambda *args: pytest.fail("loaded a model for a refused run"))
    outcome = CliRunner().invoke(main, ["eval", "--model", "demo-resnet18", "--out", str(out), "--resume"])
    assert outcome.exit_code != 0
    assert outcome.output == (
        f"Error: {out} is in use by pid {os.getppid()} on host {socket.gethostname()} since "
        "2026-12-04 06:30 UTC: wait for it to finish, or use another --out\n"
    )


def test_a_lock_of_another_host_is_never_taken_over(linear_model, cifar10_sample, tmp_path):
    out = tmp_path / "run"
    _lock(out, pid=_gone_pid(), host="elsewhere")
    with pytest.raises(EvaluationError) as error:
        evaluate(linear_model, *cifar10_sample, out=out, **FAST)
    message = str(error.value)
    assert "\n" not in message and "on host elsewhere since 2026-12-04 06:30 UTC (another machine)" in message
    assert message.endswith(f"if that run is gone, delete {out / 'lock.json'}")


def test_a_lock_left_by_a_gone_process_is_taken_over_with_a_notice(
    linear_model, cifar10_sample, tmp_path, capsys
):
    out, pid = tmp_path / "run", _gone_pid()
    _lock(out, pid=pid)
    evaluate(linear_model, *cifar10_sample, out=out, resume=True, **FAST)
    notices = [line for line in capsys.readouterr().out.splitlines() if "pid" in line]
    taken = f"{out}: taking over the lock of pid {pid} (since 2026-12-04 06:30 UTC), which is gone"
    assert notices == [taken]
    assert (out / "result.json").is_file() and not (out / "lock.json").exists()


def test_the_lock_is_released_after_a_run_and_after_an_error(linear_model, cifar10_sample, tmp_path):
    out = tmp_path / "run"
    evaluate(linear_model, *cifar10_sample, out=out, **FAST)
    assert not (out / "lock.json").exists()
    with pytest.raises(EvaluationError, match="already holds a finished evaluation"):
        evaluate(linear_model, *cifar10_sample, out=out, **FAST)
    assert not (out / "lock.json").exists()
    with pytest.raises(EvaluationError, match="labels go up to 10"):  # an error in the middle of the run
        evaluate(linear_model, cifar10_sample[0], cifar10_sample[1] + 1, out=tmp_path / "other", **FAST)
    other = tmp_path / "other"
    assert (other / "manifest.json").is_file() and not (other / "lock.json").exists()


def test_a_finished_run_resumed_is_shown_once_and_not_rewritten(
    linear_model, cifar10_sample, tmp_path, capsys
):
    out = tmp_path / "run"
    first = evaluate(linear_model, *cifar10_sample, out=out, **FAST)
    stored = (out / "result.json").read_bytes()
    capsys.readouterr()
    again = evaluate(linear_model, *cifar10_sample, out=out, resume=True, **{**FAST, "progress": True})
    captured = capsys.readouterr()
    made = datetime.fromisoformat(first.provenance["finished"]).astimezone(timezone.utc)
    assert captured.out == (
        f"{out}: already complete (made {made:%Y-%m-%d %H:%M} UTC); showing the stored result\n"
    )
    assert captured.err == "", "no progress bar, no estimate"
    assert (out / "result.json").read_bytes() == stored
    assert again.robust_flags == first.robust_flags and again.timings == first.timings
    wall = first.timings["wall"]
    assert f"; {wall:.1f} s wall\n" in format_summary(first)
    assert f"; {wall:.1f} s wall (all of it in an earlier run)\n" in format_summary(again)


def test_a_partly_resumed_run_counts_this_run_and_the_earlier_chunks_apart(
    linear_model, cifar10_sample, tmp_path
):
    out = tmp_path / "run"
    evaluate(linear_model, *cifar10_sample, out=out, **FAST)
    (out / "result.json").unlink()
    (out / "chunks" / "chunk_00001.json").unlink()
    earlier = sum(json.loads((out / "chunks" / "chunk_00000.json").read_text())["timings"].values())
    resumed = evaluate(linear_model, *cifar10_sample, out=out, resume=True, **FAST)
    assert resumed.timings["earlier_runs"] == pytest.approx(earlier)
    wall = resumed.timings["wall"]
    assert f"{wall:.1f} s wall this run, {wall + earlier:.1f} s in all" in format_summary(resumed)
    assert EvalResult.load(out / "result.json").timings == resumed.timings


def test_chunks_finished_before_and_no_result_yet_are_merged_as_an_earlier_run(
    linear_model, cifar10_sample, tmp_path
):
    out = tmp_path / "run"
    evaluate(linear_model, *cifar10_sample, out=out, **FAST)
    shutil.copy(out / "result.json", tmp_path / "first.json")
    (out / "result.json").unlink()  # killed between the last chunk and the result
    resumed = evaluate(linear_model, *cifar10_sample, out=out, resume=True, **FAST)
    assert resumed.provenance["resumed_chunks"] == 2 and (out / "result.json").is_file()
    assert "wall (all of it in an earlier run)" in format_summary(resumed)
