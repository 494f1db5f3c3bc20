"""``ikl-zoo sample-data`` and ``ikl-zoo eval``: the summary, the record, one-line errors, a real kill."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ikl_zoo import load_model
from ikl_zoo.cli import main
from ikl_zoo.data import load_test_examples
from ikl_zoo.evaluate import EvalResult, EvalSettings, evaluate, format_summary

from .conftest import FAST_APGD

TINY_ARGS = shlex.split(
    "--dataset cifar10 --n-examples 20 --eps 4/255 --version custom --attacks apgd-ce "
    "--attack-option apgd.n_iter=10 --attack-option apgd.n_restarts=1 --device cpu"
)


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_sample_data_writes_a_readable_data_dir(tmp_path):
    outcome = _run("sample-data", "--out", str(tmp_path / "data"), "--dataset", "cifar100")
    assert outcome.exit_code == 0, outcome.output
    x, y = load_test_examples("cifar100", data_dir=tmp_path / "data")
    assert x.shape == (20, 3, 32, 32) and y[0] == 49
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()


def test_eval_prints_the_summary_and_writes_the_result(tiny_folder, sample_dir, tmp_path):
    out = tmp_path / "run"
    outcome = _run(
        "eval", "--model", str(tiny_folder), "--data-dir", str(sample_dir), *TINY_ARGS, "--chunk-size", "10",
        "--out", str(out), "--no-progress", "--record", "--records", str(tmp_path / "records"),
    )
    assert outcome.exit_code == 0, outcome.output
    result = EvalResult.load(out / "result.json")
    lines = outcome.output.splitlines()
    assert lines[0].startswith(
        f"{tiny_folder} on cifar10 (first 20 test images), Linf eps 4/255, AutoAttack custom"
    )
    assert any(line.split()[:3] == ["clean", "100.00%", "20/20"] for line in lines)
    final = next(line for line in lines if line.startswith("AutoAttack (final)"))
    assert f"{100 * result.robust_acc:.2f}%" in final
    assert "data: CIFAR-10 folder written by ikl-zoo: foolbox sample (test 0-19)" in outcome.output
    assert f"result: {out / 'result.json'}" in outcome.output
    assert result.provenance["data_source"].endswith("foolbox sample (test 0-19)")
    assert result.provenance["official_test_set"] is False
    assert len(result.provenance["checkpoint_sha256"]) == 64
    record = next(line for line in lines if line.startswith("record: "))
    written = json.loads(Path(record.removeprefix("record: ")).read_text())
    assert written["ikl_zoo"]["measurement"]["settings"]["n_examples"] == 20


def _published_result(n: int, data_source: str, *, official: bool) -> EvalResult:
    robust = round(0.7 * n)
    return EvalResult(
        model_id="Cui2023Decoupled_WRN-28-10", settings=EvalSettings(n_examples=n, batch_size=20),
        attacks=["apgd-ce", "apgd-t", "fab-t", "square"], batch_size=20, clean_acc=0.95,
        robust_acc=robust / n, clean_flags=[True] * n, robust_flags=[True] * robust + [False] * (n - robust),
        per_attack=dict.fromkeys(["apgd-ce", "apgd-t", "fab-t", "square"], robust / n),
        provenance={"data_source": data_source, "official_test_set": official},
        published={"clean_acc": 92.16, "autoattack_acc": 67.73, "source": "RobustBench leaderboard"},
    )


def test_summary_shows_published_figures_and_the_difference_on_the_full_test_set():
    """A registered model evaluated under its published threat model gets the published column."""
    from ikl_zoo.evaluate import summary

    result = _published_result(10_000, "CIFAR-10 (torchvision, md5-checked)", official=True)
    text = summary.format_summary(result)
    assert "92.16%" in text and "+2.84" in text and "67.73%" in text and "+2.27" in text
    assert "no difference" not in text


@pytest.mark.parametrize(
    ("n", "data_source", "official", "why"),
    [
        (20, "CIFAR-10 folder written by ikl-zoo: foolbox sample", False, "this run used 20 images"),
        (1000, "CIFAR-10 (torchvision, md5-checked)", True, "this run used 1000 images"),
        (10_000, "CIFAR-10 folder written by ikl-zoo: arrays", False, "images are not the real test set"),
    ],
)
def test_summary_gives_no_difference_where_the_images_are_not_the_published_ones(
    n, data_source, official, why
):
    """A subset's sampling error (about 10 points on 20 images) would read as a gap to the published one."""
    from ikl_zoo.evaluate import summary

    text = summary.format_summary(_published_result(n, data_source, official=official))
    assert "92.16%" in text and "67.73%" in text
    assert "+2.84" not in text and "+2.27" not in text
    assert why in text and "no difference is given" in text


def _assert_one_error_line(outcome, message: str) -> str:
    """Exit status 2, nothing on stdout, exactly one stderr line: ``Error: ...`` naming the problem."""
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stdout == "" and "Traceback" not in outcome.stderr
    lines = outcome.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), outcome.stderr
    assert message in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "8/0"], "is not a number or a fraction"),
        (["--eps", "abc"], "is not a number or a fraction"),
        (["--eps", "nan"], "must be a positive finite number"),
        (["--eps", "inf"], "must be a positive finite number"),
        (["--eps", "0"], "must be a positive finite number"),
        (["--eps", "-8/255"], "must be a positive finite number"),
        (["--eps", "8"], "Linf eps 8 exceeds the [0, 1] image range: did you mean 8/255?"),
        (["--eps", "300/255"], "Linf eps 1.17647 exceeds the [0, 1] image range"),
        (["--n-examples", "0"], "'--n-examples': 0 is not in the range x>=1"),
        (["--batch-size", "0"], "neither a positive integer nor auto"),
        (["--batch-size", "big"], "neither a positive integer nor auto"),
        (["--batch-size", "\u00b2"], "neither a positive integer nor auto"),
        (["--norm", "linf"], "'linf' is not one of 'Linf', 'L2', 'L1'"),
        (["--version", "standrad"], "'standrad' is not one of 'standard'"),
        (["--chunk-size", "0"], "'--chunk-size': 0 is not in the range x>=1"),
        (["--checkpoint", "nothere.pt"], "Path 'nothere.pt' does not exist"),
        (["--out", "{file}"], "is a file"),
        (["--data-dir", "{file}"], "is a file"),
        (["--attack-option", "apgd-n_iter"], "expected OBJECT.SETTING=N"),
        (["--model"], "'--model' requires an argument"),
    ],
)
def test_eval_rejects_bad_options_in_one_line(tmp_path, args, message):
    """Click's usage errors and ikl-zoo's own: one line naming the option and `ikl-zoo eval --help`."""
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    args = [arg.replace("{file}", str(a_file)) for arg in args]
    outcome = CliRunner().invoke(main, ["eval", "--model", "demo-resnet18", "--device", "cpu", *args])
    assert _assert_one_error_line(outcome, message).endswith("(see ikl-zoo eval --help)")


@pytest.mark.parametrize("device", ["mps", "meta", "tpu", "cuda:x", "cuda:-1"])
def test_eval_refuses_devices_it_does_not_run_on(device):
    outcome = CliRunner().invoke(main, ["eval", "--model", "demo-resnet18", "--device", device])
    _assert_one_error_line(outcome, "use auto, cpu, cuda or cuda:N")


def test_l2_budgets_above_one_and_auto_in_capitals_are_accepted():
    """Only Linf is bounded by the image range (L2 0.5 and L1 12 are usual): parsing gets past eps and the
    batch size, to the (deliberately) unsupported device."""
    for norm, eps in (("L2", "2.5"), ("L1", "12")):
        outcome = CliRunner().invoke(main, [
            "eval", "--model", "demo-resnet18", "--norm", norm, "--eps", eps, "--batch-size", "AUTO",
            "--device", "mps",
        ])
        _assert_one_error_line(outcome, "device 'mps' is not supported")


def test_usage_errors_are_one_line_in_a_real_process():
    """A real process, not only CliRunner: no usage block, no traceback."""
    command = [sys.executable, "-m", "ikl_zoo.cli", "eval", "--model", "demo-resnet18", "--eps", "8"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2 and finished.stdout == ""
    (line,) = finished.stderr.splitlines()
    assert line.startswith(
        "Error: Invalid value for '--eps': Linf eps 8 exceeds the [0, 1] image range: did you mean 8/255? "
        "(see "
    )
    assert line.endswith(" eval --help)")  # named as it was run: here `python -m ikl_zoo.cli`


def test_eval_errors_are_one_line(tiny_folder, tmp_path):
    arguments = ["eval", "--model", str(tiny_folder), "--data-dir", str(tmp_path / "nowhere"), *TINY_ARGS]
    outcome = CliRunner().invoke(main, [*arguments, "--out", str(tmp_path / "run"), "--no-download"])
    assert "ikl-zoo sample-data --out" in _assert_one_error_line(outcome, "Error: CIFAR-10 not found in")


def test_zoo_folder_of_the_other_dataset_is_refused(tiny_folder, sample_dir, tmp_path):
    """CIFAR-10's labels 0-9 fit a CIFAR-100 head, so nothing downstream would notice the wrong dataset."""
    folder = tmp_path / "c100"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "dataset": "cifar100"}))
    out = tmp_path / "run"
    outcome = CliRunner().invoke(main, [
        "eval", "--model", str(folder), "--data-dir", str(sample_dir), *TINY_ARGS, "--out", str(out),
    ])
    expected = f"{folder} holds a cifar100 model (its config.json says so), not a cifar10 one"
    assert _assert_one_error_line(outcome, expected).endswith(": pass --dataset cifar100")
    assert not out.exists()


def test_checkpoint_given_as_a_zoo_folder_is_hashed(tiny_folder, sample_dir, tmp_path):
    from ikl_zoo.zoo.checkpoints import file_sha256

    out = tmp_path / "run"
    outcome = _run("eval", "--model", str(tiny_folder), "--checkpoint", str(tiny_folder), "--data-dir",
                   str(sample_dir), *TINY_ARGS, "--n-examples", "2", "--out", str(out), "--no-progress")
    assert outcome.exit_code == 0, outcome.output
    provenance = EvalResult.load(out / "result.json").provenance
    assert provenance["checkpoint_sha256"] == file_sha256(tiny_folder / "model.safetensors")


def test_damaged_sample_dir_is_one_line_naming_the_file(tmp_path):
    """A data dir ikl-zoo wrote that lost its batches.meta: one line, the file and the command to fix it."""
    data = tmp_path / "data"
    assert _run("sample-data", "--out", str(data), "--dataset", "cifar10").exit_code == 0
    (data / "cifar-10-batches-py" / "batches.meta").unlink()
    outcome = CliRunner().invoke(main, [
        "eval", "--model", "demo-resnet18", "--data-dir", str(data), "--device", "cpu", "--no-download",
    ])
    line = _assert_one_error_line(outcome, f"cannot read {data / 'cifar-10-batches-py' / 'batches.meta'}")
    assert line.endswith(f"write the folder again with `ikl-zoo sample-data --out {data}`")


@pytest.mark.slow
def test_killed_run_resumes_to_the_flags_of_an_uninterrupted_run(tiny_folder, sample_dir, tmp_path):
    """SIGKILL the CLI once a chunk is on disk, rerun with --resume, compare with a run never interrupted."""
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "ikl_zoo.cli", "eval", "--model", str(tiny_folder),
        "--data-dir", str(sample_dir), "--out", str(out), *TINY_ARGS,
        *shlex.split("--attack-option apgd.n_iter=40 --chunk-size 2 --batch-size 2 --no-progress"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any((out / "chunks").glob("chunk_*.json")):
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "no chunk written within 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done_before = len(list((out / "chunks").glob("chunk_*.json")))
    assert 1 <= done_before < 10 and not (out / "result.json").exists()

    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    result = EvalResult.load(out / "result.json")
    assert result.provenance["resumed_chunks"] == done_before

    x, y = load_test_examples("cifar10", data_dir=sample_dir, n_examples=20)
    uninterrupted = evaluate(
        load_model(str(tiny_folder)), x, y, eps=4 / 255, version="custom", attacks=["apgd-ce"],
        attack_options={"apgd": {**FAST_APGD["apgd"], "n_iter": 40}}, chunk_size=2, batch_size=2,
        progress=False,
    )
    assert result.robust_flags == uninterrupted.robust_flags
    assert result.per_attack == uninterrupted.per_attack
    assert 0 < sum(result.robust_flags) < 20


def test_record_of_a_registry_model_with_other_weights_is_refused_before_the_run(sample_dir, tmp_path):
    """The record would be refused after the attacks; --record with --checkpoint says so before any work."""
    out = tmp_path / "run"
    (tmp_path / "mine.pt").write_bytes(b"never read: the refusal comes first")
    outcome = CliRunner().invoke(main, [
        "eval", "--model", "demo-resnet18", "--checkpoint", str(tmp_path / "mine.pt"), "--data-dir",
        str(sample_dir), *TINY_ARGS, "--out", str(out), "--record", "--records", str(tmp_path / "records"),
    ])
    line = _assert_one_error_line(outcome, "Error: the result measures demo-resnet18 with weights from")
    assert f"`ikl-zoo convert {tmp_path / 'mine.pt'} --model demo-resnet18 --dataset cifar10 -o DIR`" in line
    assert not out.exists() and not (tmp_path / "records").exists()


def test_record_with_a_checkpoint_of_a_mistyped_id_names_the_id_not_a_convert(sample_dir, tmp_path):
    """Convert advice for an id that is not registered would send the user to a second error."""
    (tmp_path / "mine.pt").write_bytes(b"never read: the unknown id comes first")
    outcome = CliRunner().invoke(main, [
        "eval", "--model", "demo-resnet19", "--checkpoint", str(tmp_path / "mine.pt"), "--data-dir",
        str(sample_dir), *TINY_ARGS, "--out", str(tmp_path / "run"), "--record",
        "--records", str(tmp_path / "records"),
    ])
    line = _assert_one_error_line(outcome, "Error: ")
    assert "demo-resnet18" in line and "ikl-zoo convert" not in line


def test_estimate_only_prints_the_time_and_writes_nothing(tiny_folder, sample_dir, tmp_path):
    out = tmp_path / "run"
    outcome = _run(
        "eval", "--model", str(tiny_folder), "--data-dir", str(sample_dir), *TINY_ARGS, "--batch-size", "10",
        "--out", str(out), "--estimate-only",
    )
    assert outcome.exit_code == 0, outcome.output
    assert outcome.output.startswith("estimated ") and " for 20 images on cpu (" in outcome.output
    assert not out.exists()


def test_bf16_screen_is_marked_in_the_summary_and_recorded(tiny_folder, sample_dir, tmp_path):
    out = tmp_path / "run"
    outcome = _run(
        "eval", "--model", str(tiny_folder), "--data-dir", str(sample_dir), *TINY_ARGS, "--out", str(out),
        "--precision", "bf16",
    )
    assert outcome.exit_code == 0, outcome.output
    assert "precision bf16" in outcome.output and "bf16 screen: not a leaderboard number" in outcome.output
    assert "estimated " in outcome.output and "95% CI" in outcome.output
    data = json.loads((out / "result.json").read_text())
    assert data["settings"]["precision"] == "bf16"
    assert data["provenance"]["precision_in_force"]["autocast"] == "bf16"


def test_without_a_terminal_progress_is_one_line_per_chunk_and_attack(tiny_folder, sample_dir, tmp_path):
    """CI, nohup, a log file: no bar redraws, a short line per attack and per chunk."""
    out = tmp_path / "run"
    outcome = _run(
        "eval", "--model", str(tiny_folder), "--data-dir", str(sample_dir), *TINY_ARGS, "--chunk-size", "10",
        "--batch-size", "10", "--out", str(out),
    )
    assert outcome.exit_code == 0, outcome.output
    assert "\r" not in outcome.output and "\x1b" not in outcome.output
    result = EvalResult.load(out / "result.json")
    progress = outcome.stderr.splitlines()
    assert len(progress) == 4, "a line per chunk and attack, a line per chunk"
    robust = [sum(result.robust_flags[:10]), sum(result.robust_flags[10:])]
    assert [line.split(" robust in ")[0] for line in progress[0::2]] == [
        "chunk 1/2 apgd-ce: 10 -> " + str(robust[0]), "chunk 2/2 apgd-ce: 10 -> " + str(robust[1])
    ]
    assert progress[1].startswith(f"chunk 1/2: robust {robust[0]}/10 = {10 * robust[0]:.1f}% (95% CI ")
    assert progress[3].startswith(f"chunk 2/2: robust {sum(robust)}/20 = ") and "(95% CI " in progress[3]
    printed = outcome.stdout.splitlines()
    assert printed[0].startswith("estimated ") and "for 20 images on cpu (" in printed[0]
    assert printed[1:] == [*format_summary(result).splitlines(), f"result: {out / 'result.json'}"]
