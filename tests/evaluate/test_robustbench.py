"""``robustbench:<id>`` peers load through robustbench's own loader; Google Drive is replaced by files."""

from __future__ import annotations

import pickle

import pytest
import requests
import torch
from click.testing import CliRunner

from ikl_zoo._robustbench import import_robustbench, robustbench_model_dicts
from ikl_zoo.cli import main
from ikl_zoo.errors import CheckpointError, UnknownModelError
from ikl_zoo.evaluate import EvalResult, EvalSettings
from ikl_zoo.evaluate.sources import _weights_only_torch_load, load_for_evaluation

PEER = "Wong2020Fast"  # a PreActResNet-18: the smallest CIFAR-10 Linf entry to build


@pytest.fixture(scope="module")
def peer_state() -> dict[str, torch.Tensor]:
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    model = robustbench_model_dicts()["cifar10"]["Linf"][PEER]["model"]()
    torch.random.set_rng_state(state)
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.fixture
def no_drive(monkeypatch):
    import_robustbench()
    import robustbench.utils

    def unreachable(gdrive_id, fname_save):
        raise requests.ConnectionError("Failed to resolve 'drive.google.com'")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", unreachable)
    return robustbench.utils


def _place(peer_state, root):
    path = root / "cifar10" / "Linf" / f"{PEER}.pt"
    path.parent.mkdir(parents=True)
    # The authors' files wrap the weights and prefix them, which robustbench's loader undoes.
    torch.save({"state_dict": {f"module.{key}": value for key, value in peer_state.items()}}, path)
    return path


def test_peer_loads_from_where_robustbench_looks(peer_state, no_drive, tmp_path):
    path = _place(peer_state, tmp_path)
    source = load_for_evaluation(f"robustbench:{PEER}", dataset="cifar10", robustbench_dir=tmp_path)
    assert source.checkpoint_path == path
    # RobustBench's own published row, so the summary can put the measurement beside it
    assert (source.published["clean_acc"], source.published["autoattack_acc"]) == (83.34, 43.21)
    assert source.published["source"].startswith("RobustBench leaderboard")
    assert source.published_threat == ("Linf", 8 / 255)
    assert not source.model.training
    loaded = source.model.state_dict()
    assert loaded.keys() == peer_state.keys()
    assert all(torch.equal(loaded[key], peer_state[key]) for key in peer_state)


def test_peer_download_goes_through_robustbench_into_the_cache(peer_state, no_drive, tmp_path, monkeypatch):
    calls = []

    def drive(gdrive_id, fname_save):
        calls.append((gdrive_id, str(fname_save)))
        torch.save(peer_state, fname_save)

    monkeypatch.setattr(no_drive, "download_gdrive_new", drive)
    source = load_for_evaluation(f"robustbench:{PEER}", dataset="cifar10", robustbench_dir=tmp_path)
    expected_id = robustbench_model_dicts()["cifar10"]["Linf"][PEER]["gdrive_id"]
    assert calls == [(expected_id, str(tmp_path / "cifar10" / "Linf" / f"{PEER}.pt"))]
    assert source.checkpoint_path.is_file()


def test_unreachable_drive_says_where_to_put_the_checkpoint(no_drive, tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_for_evaluation(f"robustbench:{PEER}", dataset="cifar10", robustbench_dir=tmp_path)
    message = str(error.value)
    assert "could not download Wong2020Fast from Google Drive (ConnectionError" in message
    assert f"put its checkpoint at {tmp_path / 'cifar10' / 'Linf' / 'Wong2020Fast.pt'}" in message


def test_a_checkpoint_that_would_run_code_is_refused(no_drive, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "cifar10" / "Linf" / f"{PEER}.pt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": Payload()}, path, _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match=f"could not load {path} .*delete it to download it again"):
        load_for_evaluation(f"robustbench:{PEER}", dataset="cifar10", robustbench_dir=tmp_path)
    # Even a call that asks for a full unpickle gets weights_only while robustbench loads, and only then.
    original = torch.load
    with _weights_only_torch_load(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=False)
    assert torch.load is original


def test_unknown_peer_suggests_close_ids():
    with pytest.raises(UnknownModelError, match="did you mean robustbench:Wong2020Fast"):
        load_for_evaluation("robustbench:Wong2020Fst", dataset="cifar10")


def test_eval_command_measures_a_peer(peer_state, no_drive, sample_dir, tmp_path):
    _place(peer_state, tmp_path / "cache")
    outcome = CliRunner().invoke(
        main,
        [
            "eval",
            "--model",
            f"robustbench:{PEER}",
            "--data-dir",
            str(sample_dir),
            "--n-examples",
            "4",
            "--eps",
            "8/255",
            "--version",
            "custom",
            "--attacks",
            "apgd-ce",
            "--attack-option",
            "apgd.n_iter=2",
            "--attack-option",
            "apgd.n_restarts=1",
            "--device",
            "cpu",
            "--robustbench-dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        catch_exceptions=False,
    )
    assert outcome.exit_code == 0, outcome.output
    result = EvalResult.load(tmp_path / "run" / "result.json")
    assert result.model_id == "robustbench:Wong2020Fast" and result.n_examples == 4
    assert result.provenance["model_source"] == "RobustBench model zoo (Wong2020Fast, cifar10, Linf)"


@pytest.mark.parametrize(
    ("eps", "version", "attached"),
    [
        (8 / 255, "standard", True),
        (8 / 255, "custom", False),
        (8 / 255, "plus", False),
        (8 / 255, "rand", False),
        (4 / 255, "standard", False),
        (0.031, "standard", False),  # the old way of writing 8/255: another budget
    ],
)
def test_published_figures_go_only_with_the_threat_model_and_version_they_were_measured_under(
    peer_state, no_drive, sample_dir, tmp_path, monkeypatch, eps, version, attached
):
    """RobustBench's figure is standard AutoAttack at the board's eps: any other run gets none to compare."""
    import ikl_zoo.evaluate.run as run_module

    _place(peer_state, tmp_path / "cache")
    handed_over = {}
    monkeypatch.setattr(run_module, "evaluate", lambda *args, **kwargs: handed_over.update(kwargs))
    request = run_module.ModelRequest(
        f"robustbench:{PEER}", data_dir=sample_dir, robustbench_dir=tmp_path / "cache"
    )
    attacks = ["apgd-ce"] if version == "custom" else None
    settings = EvalSettings(n_examples=2, eps=eps, version=version, attacks=attacks, device="cpu")
    run_module.evaluate_model(request, settings=settings)
    assert (handed_over["facts"].published is not None) == attached
    assert handed_over["settings"] == settings


def test_a_registered_model_with_another_checkpoint_is_marked_as_replaced_weights():
    from importlib.resources import files

    shipped = files("pyautoattack") / "examples" / "model_test.pt"
    source = load_for_evaluation("demo-resnet18", dataset="cifar10", checkpoint=str(shipped))
    assert source.replaced_weights == str(shipped) and source.published is None
    assert load_for_evaluation("demo-resnet18", dataset="cifar10").replaced_weights is None
