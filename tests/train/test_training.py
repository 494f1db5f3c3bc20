"""Real IKL-AT runs on CPU: a small WideResNet learns, resumes bit for bit, and its zoo folder loads."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ikl_zoo.cli import main
from ikl_zoo.publish import validate_zoo_folder
from ikl_zoo.train import RunSettings, TrainingError, get_recipe, load_training_checkpoint, train_ikl_at
from ikl_zoo.zoo.loading import load_model, read_spec

pytestmark = pytest.mark.slow

SMALL_RUN = [
    "--arch", "wrn-10-1", "--epochs", "5", "--batch-size", "16", "--lr", "0.1", "--eps", "2/255",
    "--eps-ramp-epochs", "0", "--attack-steps", "1", "--awp-gamma", "0", "--steps-per-epoch", "3",
    "--workers", "0", "--device", "cpu", "--no-download",
    "--ema-decay", "0.3",  # 5 epochs: the recipe's 0.9 per epoch would average in mostly epoch 1
]


@pytest.fixture(scope="module")
def cli_run(colour_cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "wrn10-colours"
    result = CliRunner().invoke(
        main, ["train", "--data-dir", str(colour_cifar_dir), "--out", str(out), *SMALL_RUN]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'model'}" in result.output
    assert f"ikl-zoo eval --model {out / 'model'} --dataset cifar10 --eps 2/255" in result.output
    return out


def test_training_learns_a_learnable_task(cli_run: Path):
    history = json.loads((cli_run / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2, 3, 4, 5]
    losses = [record["loss"] for record in history]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < 0.85 * losses[0] and losses[-1] == min(losses), losses
    assert history[-1]["adv_acc"] > history[0]["adv_acc"]
    assert [record["lr"] for record in history] == sorted((record["lr"] for record in history), reverse=True)


def test_the_zoo_folder_records_recipe_prior_data_and_seed_and_loads(cli_run: Path):
    config = read_spec(cli_run / "model").to_json()
    assert config["model_id"] == "wrn10-colours" and config["dataset"] == "cifar10"
    assert config["threat_model"] == "Linf" and config["eps"] == pytest.approx(2 / 255)
    assert config["architecture"] == {
        "architecture_class": "WideResNet", "depth": 10, "widen_factor": 1, "num_classes": 10,
    }
    training = config["training"]
    assert training["method"] == "IKL-AT" and training["recipe"] == "cifar10"
    assert (training["alpha"], training["beta"], training["epochs"]) == (3, 20, 5)
    assert training["steps_per_epoch"] == 3 and training["final_weights"].startswith("exponential moving")
    prior = torch.tensor(config["class_prior"], dtype=torch.float64)
    assert prior.shape == (10, 10)
    torch.testing.assert_close(prior.sum(1), torch.ones(10, dtype=torch.float64), rtol=0, atol=1e-6)
    assert (prior.argmax(1) == torch.arange(10)).sum() >= 5  # the learnt classes dominate their own rows
    assert config["data"]["images"] == 160 and config["seed"] == 0
    assert validate_zoo_folder(cli_run / "model")["sha256"] == config["sha256"]  # what `ikl-zoo push` checks
    assert "ema_decay" in (cli_run / "model" / "README.md").read_text()  # the card shows the recipe

    state = load_training_checkpoint(cli_run)
    model = load_model(cli_run / "model")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["ema"][key]), key  # the averaged weights, BatchNorm included
    again = load_model(cli_run / "model", checkpoint=cli_run / "model" / "model.safetensors")
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), again(x), rtol=0, atol=0)


def test_train_then_evaluate_then_card(cli_run: Path, colour_cifar_dir: Path, tmp_path: Path):
    from ikl_zoo.cards.model_card import build_model_card
    from ikl_zoo.data import load_test_examples
    from ikl_zoo.evaluate.runner import evaluate

    config = read_spec(cli_run / "model").to_json()
    model = load_model(cli_run / "model", checkpoint=cli_run / "model" / "model.safetensors")
    x, y = load_test_examples("cifar10", data_dir=colour_cifar_dir, n_examples=16)
    result = evaluate(
        model, x, y, eps=config["eps"], version="custom", attacks=["apgd-ce"],
        attack_options={"apgd": {"n_iter": 5}}, batch_size=16, device="cpu", model_id=config["model_id"],
        dataset="cifar10", progress=False,
    )
    assert result.n_examples == 16 and 0 <= result.robust_acc <= result.clean_acc <= 1
    assert result.clean_acc >= 0.3  # chance is 0.1: the colours are being learnt

    text = str(build_model_card(cli_run / "model", result=result))
    assert "wrn10-colours" in text and "IKL-AT" in text and "ikl-zoo train" in text
    assert f"{result.clean_acc * 100:.2f}" in text  # the measured clean accuracy is on the card

    # The command `ikl-zoo train` prints takes the folder as it is.
    command = f"eval --model {cli_run / 'model'} --dataset cifar10 --eps 2/255 --data-dir {colour_cifar_dir}"
    quick = ["--n-examples", "4", "--version", "custom", "--attacks", "apgd-ce", "--attack-option",
             "apgd.n_iter=2", "--device", "cpu", "--out", str(tmp_path / "eval"), "--no-progress"]
    evaluated = CliRunner().invoke(main, [*command.split(), *quick])
    assert evaluated.exit_code == 0, evaluated.output
    assert (tmp_path / "eval" / "result.json").is_file()


def _small_recipe(**overrides):
    knobs = dict(
        arch="wrn-10-1", epochs=2, batch_size=8, lr=0.05, eps=4 / 255, attack_steps=1, awp_warmup_epochs=2,
        autoaugment=True, ema_every="step", seed=3,
    )
    return get_recipe("cifar10", **{**knobs, **overrides})


def _train(recipe, data_dir: Path, out_dir: Path, **run):
    settings = RunSettings(
        data_dir=data_dir, out_dir=out_dir, device="cpu", workers=0, steps_per_epoch=2, download=False,
        progress=False, **run,
    )
    return train_ikl_at(recipe, settings)


def test_resume_continues_bit_for_bit(colour_cifar_dir: Path, tmp_path: Path):
    # Epoch 2 uses AWP, the AutoAugment view and the per-step average: every piece of state is exercised.
    recipe = _small_recipe()
    straight = _train(recipe, colour_cifar_dir, tmp_path / "straight")
    first = _train(recipe, colour_cifar_dir, tmp_path / "resumed", stop_after_epochs=1)
    assert first.model_dir is None and first.epochs_done == 1
    assert load_training_checkpoint(tmp_path / "resumed")["epoch"] == 1
    assert first.checkpoint == tmp_path / "resumed" / "checkpoint.pt" and first.checkpoint.is_file()
    shown = CliRunner().invoke(main, ["train", "--data-dir", str(colour_cifar_dir), "--out",
                                      str(tmp_path / "resumed"), "--resume", "--show-recipe"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == json.loads(json.dumps(recipe.to_dict()))  # the checkpoint's recipe
    resumed = _train(None, colour_cifar_dir, tmp_path / "resumed", resume=True)
    assert resumed.epochs_done == 2 and resumed.history[-1]["awp"]

    a, b = load_training_checkpoint(straight.out_dir), load_training_checkpoint(resumed.out_dir)
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    torch.testing.assert_close(a["class_prior"]["prior"], b["class_prior"]["prior"], rtol=0, atol=0)
    momenta = zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True)
    for state_a, state_b in momenta:
        assert torch.equal(state_a["momentum_buffer"], state_b["momentum_buffer"])
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert read_spec(straight.model_dir).sha256 == read_spec(resumed.model_dir).sha256

    # A finished or a differently configured run is never overwritten silently.
    with pytest.raises(TrainingError, match="pass --resume"):
        _train(recipe, colour_cifar_dir, straight.out_dir)
    with pytest.raises(TrainingError, match=r"epochs \(checkpoint 2, now 3\)"):
        _train(recipe.replace(epochs=3), colour_cifar_dir, straight.out_dir, resume=True)


def test_cli_errors_are_one_line(colour_cifar_dir: Path, tmp_path: Path):
    runner = CliRunner()
    data = ["--data-dir", str(colour_cifar_dir)]
    bad_arch = runner.invoke(main, ["train", *data, "--out", str(tmp_path / "x"), "--arch", "wrn-11-1"])
    assert bad_arch.exit_code == 2
    message = bad_arch.output.strip()
    assert message.startswith("Error: --arch wrn-11-1") and "\n" not in message
    no_data = ["--data-dir", str(tmp_path / "none"), "--no-download"]
    missing = runner.invoke(main, ["train", *no_data, "--out", str(tmp_path / "y"), "--arch", "wrn-10-1"])
    assert missing.exit_code == 2 and missing.output.startswith("Error: CIFAR-10 not found")
    assert not (tmp_path / "y").exists()  # no empty run folder left behind
    shown = runner.invoke(
        main, ["train", *data, "--out", str(tmp_path / "z"), "--recipe", "cifar100", "--eps", "4/255",
               "--show-recipe"],
    )
    assert shown.exit_code == 0, shown.output
    recipe = json.loads(shown.output)
    assert (recipe["dataset"], recipe["attack_beta"]) == ("cifar100", 1.0)
    assert recipe["eps"] == pytest.approx(4 / 255)


def test_torchrun_trains_with_two_processes(colour_cifar_dir: Path, tmp_path: Path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this python")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp"
    command = [
        torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(port),
        "-m", "ikl_zoo.cli", "train", "--data-dir", str(colour_cifar_dir), "--out", str(out),
        "--arch", "wrn-10-1", "--epochs", "1", "--batch-size", "8", "--attack-steps", "1",
        "--steps-per-epoch", "1", "--workers", "0", "--device", "cpu", "--no-download",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    state = load_training_checkpoint(out)
    assert state["run"]["world_size"] == 2
    assert state["history"][0]["images"] == 8  # both processes' halves of the global batch
    assert (out / "model" / "model.safetensors").is_file()


def test_unusable_run_folders_and_devices_fail_before_training(colour_cifar_dir: Path, tmp_path: Path):
    runner = CliRunner()
    common = ["train", "--data-dir", str(colour_cifar_dir), *SMALL_RUN]
    (tmp_path / "a-file").write_text("")
    cases = {
        str(tmp_path / "a-file" / "run"): "cannot write the run folder",
        str(tmp_path / "dir-checkpoint"): "checkpoint.pt is not a file",
        str(tmp_path / "keyless"): "checkpoint.pt is damaged",
        str(tmp_path / "garbage"): "checkpoint.pt is not a readable training checkpoint (Unsupported operand",
    }
    (tmp_path / "dir-checkpoint" / "checkpoint.pt").mkdir(parents=True)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "checkpoint.pt").write_bytes(b"garbage")  # torch's error runs over six lines
    (tmp_path / "keyless").mkdir()
    torch.save({"format": "ikl-zoo-train/1", "epoch": 1}, tmp_path / "keyless" / "checkpoint.pt")
    for out, message in cases.items():
        result = runner.invoke(main, [*common, "--out", out, "--resume"])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: ") and message in result.output, result.output
        assert result.output.count("\n") == 1
    for device in ("tpu", "cuda:x"):
        result = runner.invoke(main, [*common, "--out", str(tmp_path / "dev"), "--device", device])
        assert result.exit_code == 2 and f"unknown device '{device}'" in result.output, result.output
    assert not (tmp_path / "dev" / "checkpoint.pt").exists()


def test_a_diverging_run_stops_and_keeps_its_last_finite_checkpoint(colour_cifar_dir: Path, tmp_path: Path):
    recipe = _small_recipe(lr=1e30, epochs=3, autoaugment=False, awp_gamma=0.0)
    with pytest.raises(TrainingError, match=r"training diverged in epoch \d.*lower --lr"):
        _train(recipe, colour_cifar_dir, tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()
    state = load_training_checkpoint(tmp_path / "run")
    if state is not None:  # epoch 1 may survive the first steps
        assert state["epoch"] < 3
        weights = [value for value in state["model"].values() if value.is_floating_point()]
        assert all(torch.isfinite(value).all() for value in weights)
